"""Where does the TTFT gap between a real and a simulated run come from: admission or the prefill steps?

    .venv/bin/python scripts/ttft_decomposition.py <real run dir> <sim run dir> [<real> <sim> ...]

Per request: wait = start of the first step that carries it - arrival; prefill span = first token - that start;
TTFT = wait + prefill span. Prints each part's P50/P90 on both sides and the paired (real - sim) mean and median,
overall and by prompt length. Both run directories are read (and validated) through ``io.runs.load_run``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import parse_requests_field

PARTS = ("ttft_ns", "wait_ns", "prefill_span_ns")


def decompose(run_dir: Path) -> pd.DataFrame:
    run = load_run(run_dir)
    if run.iterations is None:
        raise SystemExit(f"{run_dir} has no iteration_metrics.csv")
    rq = run.requests.set_index("request_id")
    first: dict[int, int] = {}
    for start, reqs in zip(run.iterations["start_time_ns"], run.iterations["requests"]):
        for rid, _ in parse_requests_field(str(reqs)):
            first.setdefault(rid, int(start))
    rq["first_step_ns"] = pd.Series(first)
    rq["wait_ns"] = rq["first_step_ns"] - rq["arrival_time_ns"]
    rq["prefill_span_ns"] = rq["first_token_time_ns"] - rq["first_step_ns"]
    return rq


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    for real_dir, sim_dir in zip(argv[0::2], argv[1::2]):
        real, sim = decompose(Path(real_dir)), decompose(Path(sim_dir))
        both = real.index.intersection(sim.index)
        real, sim = real.loc[both], sim.loc[both]
        print(f"{Path(real_dir).name} vs {Path(sim_dir).name}: {len(both)} requests (ms)")
        for part in PARTS:
            a, b = real[part] / 1e6, sim[part] / 1e6
            print(f"  {part[:-3]:13s} real P50 {a.median():7.1f} P90 {a.quantile(.9):7.1f} | sim P50 {b.median():7.1f} P90 {b.quantile(.9):7.1f}")
        diff = (real[list(PARTS)] - sim[list(PARTS)]) / 1e6
        print("  paired real - sim: " + ", ".join(f"{p[:-3]} mean {diff[p].mean():+.1f} median {diff[p].median():+.1f}" for p in PARTS))
        buckets = pd.cut(real["num_prefill_tokens"], [0, 512, 1024, 4096])
        by = diff.groupby(buckets, observed=True)["ttft_ns"].median()
        print("  paired TTFT median by prompt tokens: " + ", ".join(f"{iv}: {v:+.1f}" for iv, v in by.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
