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

from point import replayed


def bias(steps: pd.DataFrame) -> float:
    return 100.0 * (steps["predicted_ns"].sum() / steps["measured_ns"].sum() - 1.0)


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    for point in sys.argv[3:]:
        setup, workload, load = point.split(":")
        _, it, reqs, steps = replayed(root, folder, setup, workload, float(load))
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
