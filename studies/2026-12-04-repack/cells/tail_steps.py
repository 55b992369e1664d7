"""The steps a point's TTFT tail waited through, predicted from their own batches, against the run's every step.

    .venv/bin/python studies/2026-12-04-repack/cells/tail_steps.py <publish root> <result folder> setup:workload:load ...

For each point (first replicate): every real step predicted from its own batch with the setup's bundle
(``vidur_ext/replay.py``), summed (the point's step bias), and the same over the steps that start while a request of
the TTFT tail (at or above the run's P90, P99) waits for its first token. A tail cell whose steps are predicted long
is a step error, not the schedule's. Run from the repository root after ``publish`` (its root holds the runs and
bundles).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps


def bias(steps: pd.DataFrame) -> float:
    return 100.0 * (steps["predicted_ns"].sum() / steps["measured_ns"].sum() - 1.0)


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    bundles = pd.read_csv(folder / "tables" / "bundle_test.csv").groupby("setup")["bundle_id"].first()
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    for point in sys.argv[3:]:
        setup, workload, load = point.split(":")
        run = runs[(runs["setup"] == setup) & (runs["workload"] == workload)
                   & (runs["load_fraction"] == float(load)) & (runs["replicate"] == 0)].iloc[0]
        bundle = load_profiling_root(root / "profiling" / bundles[setup], check_tables=False)
        it = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
        steps = replay_steps(bundle, it, model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                             cache_root=Path(app.paths.cache),
                             dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
        start = it["start_time_ns"].to_numpy()
        line = [f"{setup} {workload} {float(load):.0%}: every step {bias(steps):+.1f}%"]
        for q in (90, 99):
            tail = reqs[reqs["ttft_ns"] >= np.percentile(reqs["ttft_ns"], q)]
            waited = np.zeros(len(it), dtype=bool)
            for r in tail.itertuples():
                waited |= (start >= r.arrival_time_ns) & (start < r.first_token_time_ns)
            s = steps[waited]
            line.append(f"TTFT >= P{q} ({len(tail)} requests, {len(s)} steps, {s['measured_ns'].sum() / 1e6:.0f} ms, "
                        f"{(s['prompt_tokens'] > 0).mean():.0%} with a prompt): {bias(s):+.1f}%")
        print("; ".join(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
