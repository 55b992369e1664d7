"""How much a small, uniform step-time error moves the simulated latencies at each load: queueing's amplification.

For each sarathi point (first replicates), vidur-sim runs again on the point's workload with the bundle's every time
scaled by a factor (its operator and attention rows, and its step terms: every step predicted ``factor`` times as
long), and each simulation is compared with the real run as ``compare-runs`` compares them (TTFT, TPOT, E2E at P50,
P90, P99: 100 (sim - real) / real). The change per percent of step error is the amplification: ~1 where requests
do not queue (each latency a sum of its own steps), growing towards capacity, where a slower step also lengthens
the queue every later request waits in.

    .venv/bin/python studies/2026-12-03-queueing/sensitivity.py <publish root> <runs.csv> <bundle id> <out.csv> [factor ...]

``publish root`` and ``runs.csv``: a ``publish`` of the campaign's result folder (its ``--root`` and
``tables/runs.csv``); the scaled bundles and simulations go under ``<publish root>/sensitivity/``, the errors to
``out.csv`` (``explain.py`` reads them). Factors default to 0.97 1.0 1.03. Run from the repository root.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.analysis.align import load_pair
from gpu_simulate_test.analysis.metrics import metric_values, signed_error_pct, summary_statistics
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim

METRICS, PERCENTILES = ("ttft", "tpot", "e2e"), [50.0, 90.0, 99.0]


def scaled_bundle(src: Path, dest_root: Path, factor: float) -> Path:
    """A copy of bundle ``src`` whose every time is ``factor`` times as long (rows and step terms)."""
    dest = dest_root / f"{src.name}-x{factor:g}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    for name in ("mlp.csv", "attention.csv"):
        df = pd.read_csv(tmp / name)
        cols = [c for c in df.columns if c.startswith("time_stats.")]
        df[cols] = df[cols] * factor
        df.to_csv(tmp / name, index=False)
    meta = json.loads((tmp / "profile_meta.json").read_text())
    if meta.get("outside_layers"):
        meta["outside_layers"]["ms"] = [m * factor for m in meta["outside_layers"]["ms"]]
    for key, value in (meta.get("step_correction") or {}).items():
        if key.endswith("_ms"):
            meta["step_correction"][key] = value * factor
    (tmp / "profile_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    tmp.rename(dest)
    return dest


def errors(root: Path, real_run: str, sim_dir: Path) -> dict[str, float]:
    pair = load_pair(root / "real_runs", sim_dir.parent, real_run, str(sim_dir), allow_incomplete=False)
    values = metric_values(pair)
    out = {}
    for m in METRICS:
        real = summary_statistics(values[m].real, PERCENTILES)[1:]  # [0] is the mean
        sim = summary_statistics(values[m].sim, PERCENTILES)[1:]
        for p, e in zip(PERCENTILES, signed_error_pct(real, sim)):
            out[f"{m}_p{p:g}"] = float(e)
    return out


def main() -> int:
    root, runs_csv, bundle_id, out_csv = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    factors = [float(f) for f in sys.argv[5:]] or [0.97, 1.0, 1.03]
    work = root / "sensitivity"
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["replicate"] == 0) & (runs["setup"] == "sarathi")].sort_values(["workload", "load_fraction"])
    rows = []
    for factor in factors:
        bundle = scaled_bundle(root / "profiling" / bundle_id, work / "profiling", factor)
        for run in runs.itertuples():
            meta = json.loads((root / "real_runs" / run.real_run / "run_meta.json").read_text())
            app = compose_app("vidur_sim", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                            f"paths.root={root}", f"paths.vidur_runs={work / 'vidur_runs'}",
                                            f"workload_id={meta['inputs']['workload_id']}",
                                            f"profiling_root={bundle}", f"real_run={run.real_run}",
                                            "accept_bundle=true"])
            sim = run_vidur_sim(app)
            rows.append({"workload": run.workload, "load": run.load_fraction, "factor": factor,
                         **errors(root, run.real_run, sim)})
            print(f"{run.workload} {run.load_fraction:g} x{factor:g}: TTFT P50 {rows[-1]['ttft_p50']:+.1f}%", flush=True)
    df = pd.DataFrame(rows)
    df.round(3).to_csv(out_csv, index=False)
    pd.set_option("display.width", 220)
    print("\nerror vs the real run (%), by step-time factor")
    print(df.set_index(["workload", "load", "factor"]).round(1).to_string())
    lo, hi = min(factors), max(factors)
    a = df[df["factor"] == lo].set_index(["workload", "load"]).drop(columns="factor")
    b = df[df["factor"] == hi].set_index(["workload", "load"]).drop(columns="factor")
    print(f"\namplification: change of the error per 1% of step time (x{lo:g} -> x{hi:g})")
    print(((b - a) / (100 * (hi - lo))).round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
