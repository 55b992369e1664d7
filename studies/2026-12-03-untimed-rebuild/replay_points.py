"""Every real step of both replicates of one setup's points predicted from its own batch, per point: the summed step
bias, its fifths over the run, and the bias by step kind (decodes only; with prompt tokens: a chunk beside decodes
for sarathi, one or more whole prompts for vllm) and requests in the step (share of the run's measured time).

    .venv/bin/python studies/2026-12-03-untimed-rebuild/replay_points.py <publish root> <runs.csv> <bundle id> \
        <setup> <workload> <out dir>

Writes ``<out dir>/<setup>-<workload>-<load>-r<replicate>.csv`` (one row a step: measured and predicted ns) for
``first_chunks.py``, and prints the tables. Two replicates show what the steps' run-to-run variation alone gives.
Run from the repository root after ``publish`` (its ``--root`` holds the runs and the bundle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps


def main() -> int:
    root, runs_csv, bundle_id, setup, workload, out = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4],
                                                       sys.argv[5], Path(sys.argv[6]))
    out.mkdir(parents=True, exist_ok=True)
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    bundle = load_profiling_root(root / "profiling" / bundle_id, check_tables=False)
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["setup"] == setup) & (runs["workload"] == workload)].sort_values(["load_fraction", "replicate"])
    by_kind: dict[tuple[str, str], dict[str, str]] = {}
    print(f"{setup} {workload}, bundle {bundle_id}: every step predicted from its own batch")
    for run in runs.itertuples():
        steps = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
        d = replay_steps(bundle, steps, model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                         cache_root=Path(app.paths.cache),
                         dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
        d.to_csv(out / f"{setup}-{workload}-{run.load_fraction}-r{run.replicate}.csv", index=False)
        fifths = " ".join(f"{100 * (d['predicted_ns'].iloc[i].sum() / d['measured_ns'].iloc[i].sum() - 1):+.1f}"
                          for i in np.array_split(np.arange(len(d)), 5))
        bias = 100 * (d["predicted_ns"].sum() / d["measured_ns"].sum() - 1)
        print(f"  {run.load_fraction:.0%} r{run.replicate}: {len(d)} steps, summed bias {bias:+.2f}%, median error "
              f"{d['error_pct'].median():+.2f}%, by fifths of the run {fifths}")
        kind = np.where(d["prompt_tokens"] == 0, "decode", "with prompt tokens")
        size = pd.cut(d["batch_size"], [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]).astype(str)
        total = d["measured_ns"].sum()
        for (k, s), x in d.groupby([kind, size]):
            kind_bias = 100 * (x["predicted_ns"].sum() / x["measured_ns"].sum() - 1)
            cell = f"{kind_bias:+.1f} ({100 * x['measured_ns'].sum() / total:.0f})"
            by_kind.setdefault((k, s), {})[f"{run.load_fraction:.0%} r{run.replicate}"] = cell
    table = pd.DataFrame(by_kind).T.fillna("")
    table = table.loc[sorted(table.index, key=lambda ks: (ks[0], float(ks[1].split(",")[0][1:])))]
    print("\nsummed bias % by kind and requests (share % of the run's measured time):")
    print(table.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
