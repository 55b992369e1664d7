"""Sweep mode: several comparisons (e.g. one per QPS of a Hydra multirun) as latency and error vs load.

Each comparison records its load when it is made (:func:`offered_load`), so a sweep reads only
comparison directories: ``compare-runs mode=sweep comparisons=[<id|dir|glob>,...]``.
"""

from __future__ import annotations

import glob
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.metrics import HEADLINE, METRICS
from gpu_simulate_test.analysis.plots import figures_dir, plot_sweep
from gpu_simulate_test.analysis.report import SETUP_GROUPS
from gpu_simulate_test.analysis.tables import TABLES_DIR
from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import canonical_json, short_hash
from gpu_simulate_test.io.meta import build_meta, read_meta, write_json
from gpu_simulate_test.io.outputs import COMPARISON_META, SUMMARY, SWEEP_META, WORKLOAD_META, stage_output
from gpu_simulate_test.io.runs import RunData
from gpu_simulate_test.io.schemas import COMPARISON_STATS, COMPARISON_SWEEP
from gpu_simulate_test.io.tables import read_table, write_table

RATE_PROCESSES = ("poisson", "gamma", "constant")  # arrival processes whose ``qps`` is the offered load


def _configured_qps(config: Any) -> Optional[float]:
    """``workload.arrival.qps`` of an app config, when its arrival process is driven by a rate."""
    if not isinstance(config, dict):
        return None
    arrival = (config.get("workload") or {}).get("arrival") or {}
    qps = arrival.get("qps")
    if arrival.get("phases"):  # several rates: the arrivals' own rate says the load
        return None
    if arrival.get("process") in RATE_PROCESSES and isinstance(qps, (int, float)) and qps > 0:
        return float(qps)
    return None


def offered_load(real: RunData, sim: RunData, workloads_root: Path) -> dict[str, Any]:
    """The load a comparison was made at: the workload's configured QPS, else the arrivals' own rate."""
    wl_meta = Path(workloads_root) / real.workload_id / WORKLOAD_META
    sources = [real.meta.get("config"), sim.meta.get("config")]
    if wl_meta.is_file():
        sources.append(json.loads(wl_meta.read_text()).get("config"))
    for cfg in sources:
        qps = _configured_qps(cfg)
        if qps is not None:
            return {"qps": qps, "source": "workload_config"}
    arrivals = np.sort(real.requests["arrival_time_ns"].to_numpy(np.int64))
    span = float(arrivals[-1] - arrivals[0]) if len(arrivals) else 0.0
    rate = (len(arrivals) - 1) / (span * 1e-9) if span > 0 else 0.0
    return {"qps": rate, "source": "offered_rate"}


def resolve_comparisons(root: Path, entries: list[str]) -> list[Path]:
    """Each entry is a directory, an id under ``root``, or a glob under ``root``; order kept, duplicates dropped."""
    out: list[Path] = []
    for e in entries:
        cands = [Path(e)] if Path(e).is_dir() else [root / e] if (root / e).is_dir() else sorted(
            Path(p) for p in glob.glob(str(root / e)) if (Path(p) / COMPARISON_META).is_file()
        )
        if not cands:
            have = sorted(p.name for p in root.glob("*") if (p / COMPARISON_META).is_file()) if root.is_dir() else []
            raise InputError(f"comparison {e!r} matches nothing under {root} (have: {', '.join(have[-10:]) or 'none'})")
        out += [c for c in cands if c.resolve() not in {o.resolve() for o in out}]
    return out


def sweep_frame(dirs: list[Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Long table (comparison x metric x statistic with its load) and the comparisons' metas."""
    frames, metas = [], []
    for d in dirs:
        meta = read_meta(d / COMPARISON_META, "comparison")
        stats = read_table(d / TABLES_DIR / COMPARISON_STATS.filename, COMPARISON_STATS)
        frames.append(stats.assign(comparison_id=meta["id"], load_qps=meta["load"]["qps"], load_source=meta["load"]["source"]))
        metas.append(meta)
    df = pd.concat(frames, ignore_index=True)
    return df[COMPARISON_SWEEP.column_names].sort_values(["load_qps", "comparison_id", "metric"], kind="stable"), metas


def _summary(sweep: pd.DataFrame, metas: list[dict[str, Any]], tol: float) -> str:
    lines = ["# Load sweep", "", "| comparison | workload | load (req/s) | model | hardware | backend | " +
             " | ".join(f"{METRICS[m].label} P50 err | {METRICS[m].label} P99 err" for m in HEADLINE) + " |",
             "| --- | --- | ---: | --- | --- | --- | " + " | ".join("---: | ---:" for _ in HEADLINE) + " |"]
    s = sweep.set_index(["comparison_id", "metric", "statistic"])
    for meta in sorted(metas, key=lambda m: m["load"]["qps"]):
        setup = meta.get("setup", {})
        errs = []
        for m in HEADLINE:
            for st in ("p50", "p99"):
                e = s.loc[(meta["id"], m, st), "error_pct"]
                errs.append("n/a" if pd.isna(e) else f"{e:+.1f}%")
        names = [str(setup.get(g, "?")) for g in SETUP_GROUPS]
        workload = meta["inputs"].get("workload_id", "?")
        lines.append(f"| `{meta['id']}` | `{workload}` | {meta['load']['qps']:.3g} | " + " | ".join(names + errs) + " |")
    lines += ["", f"Tolerance ±{tol:g}%. All statistics: `tables/sweep.csv`. Figures: `figs/sweep_latency.png`, "
              "`figs/sweep_error.png`.", ""]
    return "\n".join(lines)


def run_sweep(app: CompareRunsAppConfig) -> Path:
    """Write ``<paths.comparisons>/<sweep_id>/`` from the comparisons named in ``app.comparisons``."""
    root = Path(app.paths.comparisons)
    dirs = resolve_comparisons(root, list(app.comparisons or []))
    if len(dirs) < 2:
        raise InputError(f"a sweep needs at least two comparisons; comparisons={list(app.comparisons or [])} gave {len(dirs)}")
    sweep, metas = sweep_frame(dirs)
    ids = [m["id"] for m in metas]
    out = stage_output(root, app.sweep_id, lambda: f"sweep-{short_hash(canonical_json(sorted(ids)))}",
                       overwrite=bool(app.overwrite), key="sweep_id")
    tol = float(app.compare.tolerance_pct)
    with out.write() as tmp:
        (tmp / TABLES_DIR).mkdir()
        write_table(sweep, tmp / TABLES_DIR / COMPARISON_SWEEP.filename, COMPARISON_SWEEP)
        plot_sweep(figures_dir(tmp), sweep, tol, HEADLINE, {m: METRICS[m].label for m in HEADLINE})
        (tmp / SUMMARY).write_text(_summary(sweep, metas, tol))
        write_json(tmp / SWEEP_META, build_meta(
            kind="comparison_sweep", id=out.id, config=asdict(app),
            inputs={"comparisons": ids},
        ))
    return out.path
