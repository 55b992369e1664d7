"""Manual: the decode-step time distribution of hf-generate real runs, beside the bundle's decode shapes.

On the H100 host the step time of this host-bound engine has two modes (~24 and ~45 ms); how often the slow one
occurs changes from one GPU call to the next. This prints, per real run, the decode steps' median, 10% trimmed mean
(the statistic the bundle is fitted on), P10/P90 and the share above ``--slow-ms``, and the same for every decode
shape of the bundle, so a TPOT error can be read against the host's state during each measurement.

    .venv/bin/python scripts/step_modes.py --runs tmp/real_runs --bundle tmp/profiling/<hf-generate bundle>
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gpu_simulate_test.io.outputs import RUN_META
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import ITERATION_PROFILE
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.vidur_ext.profiler.timing import trimmed_mean


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="a real_runs folder; its hf-generate runs are read")
    ap.add_argument("--bundle", type=Path, help="an hf-generate profiling root, for its decode shapes")
    ap.add_argument("--slow-ms", type=float, default=35.0, help="a step above this counts as the slow mode")
    args = ap.parse_args()
    print(f"| what | decode steps | median ms | trimmed mean ms | P10 ms | P90 ms | share > {args.slow_ms:g} ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in sorted(p for p in args.runs.iterdir() if (p / RUN_META).is_file()):
        run = load_run(d, "real_run")
        if run.meta["backend"]["name"] != "hf-generate" or run.iterations is None:
            continue
        it = run.iterations
        decode = it["num_prefill_tokens"] == 0  # one request at a time: a step without prefill is one decode token
        ms = ((it["end_time_ns"] - it["start_time_ns"]) / 1e6)[decode].to_numpy()
        _row(f"real run {d.name} ({run.meta['num_requests']} requests)", ms, args.slow_ms)
    if args.bundle is not None:
        its = read_table(args.bundle / "iterations.csv", ITERATION_PROFILE)
        for r in its[its["num_prefill_tokens"] == 0].itertuples():
            tm = getattr(r, "trimmed_mean_ns", float("nan")) / 1e6
            print(f"| bundle {r.shape} ({r.role}) | {r.num_samples} | {r.median_ns / 1e6:.1f} | {tm:.1f} | "
                  f"{r.p10_ns / 1e6:.1f} | {r.p90_ns / 1e6:.1f} | - |")
    return 0


def _row(label: str, ms: np.ndarray, slow_ms: float) -> None:
    if not len(ms):
        print(f"| {label} | 0 | - | - | - | - | - |")
        return
    print(f"| {label} | {len(ms)} | {np.median(ms):.1f} | {trimmed_mean(ms):.1f} | {np.percentile(ms, 10):.1f} | "
          f"{np.percentile(ms, 90):.1f} | {100 * float(np.mean(ms > slow_ms)):.0f}% |")


if __name__ == "__main__":
    raise SystemExit(main())
