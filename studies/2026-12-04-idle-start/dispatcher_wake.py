"""The 10% points' idle arrivals: how long the engine took from a request's dispatch to its first step's start,
split by whether real-bench's dispatcher redrew its progress bar right after that dispatch (no GPU; run from the
repository root after ``publish``):

    .venv/bin/python studies/2026-12-04-idle-start/dispatcher_wake.py tmp/publish-h200-native docs/results/h200-qwen3-0.6b-native

An idle arrival's first step began after an idle gap (over 50 us). ``real_bench.replay.replay`` calls ``on_idle`` (the
progress bar's redraw) after a dispatch when the next arrival is at least ``IDLE_MIN_NS`` (20 ms) away, and spins for
the last ``SPIN_NS`` (300 us) before an arrival; both hold the GIL that the engine thread, just woken, needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.real_bench.replay import IDLE_MIN_NS

IDLE_NS = 50_000


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    for _, run in runs[(runs["replicate"] == 0) & (runs["load_fraction"] == 0.1)].iterrows():
        real = root / "real_runs" / run.real_run
        it = pd.read_csv(real / "iteration_metrics.csv")
        rq = pd.read_csv(real / "request_metrics.csv").set_index("request_id").sort_values("arrival_time_ns")
        gap = (it["start_time_ns"] - it["end_time_ns"].shift(1)).fillna(0)
        first: dict[int, int] = {}
        for i, reqs in enumerate(it["requests"]):
            for rid, _ in parse_requests_field(str(reqs)):
                first.setdefault(rid, i)
        step = rq.index.map(first)
        rq = rq.assign(idle=gap.to_numpy()[step] > IDLE_NS,
                       wake_ms=(it["start_time_ns"].to_numpy()[step] - rq["dispatch_time_ns"]) / 1e6,
                       late_us=(rq["dispatch_time_ns"] - rq["arrival_time_ns"]) / 1e3,
                       redraw=(rq["arrival_time_ns"].shift(-1) - rq["arrival_time_ns"]) >= IDLE_MIN_NS)
        idle = rq[rq["idle"]]
        print(f"{run.setup} {run.workload} 10% ({run.real_run}): {len(idle)} idle arrivals, dispatched "
              f"{idle['late_us'].median():.1f} us after their arrival (median); dispatch to first step (ms):")
        table = idle.groupby("redraw")["wake_ms"].describe()[["count", "25%", "50%", "75%"]]
        print(table.rename(index={True: "redraw after it", False: "next arrival < 20 ms"}).round(3).to_string(), "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
