"""Steps with prompt tokens by how many prompts (chunks) they hold and whether their query blocks fit one wave of the
engine's prefill launch: median error and measured less predicted, over every point of a setup, both replicates.

    .venv/bin/python studies/2026-12-03-untimed-rebuild/prompts_per_step.py <publish root> <runs.csv> <setup> \
        <workload> <replay dir> [wave blocks] [block tokens]

``replay dir``: ``replay_points.py``'s output (the bundle it replayed with). A wave holds ``wave blocks`` query blocks
of ``block tokens`` (the bundle's ``row_keys``: 16 and 64 on the H200). Run from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.io.schemas import parse_requests_field


def main() -> int:
    root, runs_csv, setup, workload, replay = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4],
                                               Path(sys.argv[5]))
    wave = int(sys.argv[6]) if len(sys.argv) > 6 else 16
    block = int(sys.argv[7]) if len(sys.argv) > 7 else 64
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["setup"] == setup) & (runs["workload"] == workload)]
    frames = []
    for run in runs.itertuples():
        steps = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        d = pd.read_csv(replay / f"{setup}-{workload}-{run.load_fraction}-r{run.replicate}.csv")
        steps = steps.merge(d[["iteration_id", "measured_ns", "predicted_ns", "error_pct"]], on="iteration_id")
        steps = steps[steps["num_prefill_tokens"] > 0].copy()
        chunks = steps["requests"].apply(lambda v: [t for _, t in parse_requests_field(v) if t > 1])  # decodes: 1
        steps["prompts"] = chunks.apply(len)
        steps["one_wave"] = chunks.apply(lambda v: sum(-(-t // block) for t in v) <= wave)
        frames.append(steps)
    a = pd.concat(frames)
    a["tokens"] = pd.cut(a["num_prefill_tokens"], [0, 256, 512, 1024, 2048, 4096, 1 << 20])
    a["residual_us"] = (a["measured_ns"] - a["predicted_ns"]) / 1e3
    g = a.groupby(["prompts", "one_wave", "tokens"], observed=True)
    print(f"{setup} {workload}, every point and replicate: steps with prompt tokens (one wave: {wave} blocks of "
          f"{block} tokens)")
    print(pd.DataFrame({"steps": g.size(), "error %": g["error_pct"].median().round(1),
                        "measured - predicted us": g["residual_us"].median().round(0),
                        "measured us": (g["measured_ns"].median() / 1e3).round(0)}).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
