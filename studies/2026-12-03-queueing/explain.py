"""A point's latency errors from its step error: the time-weighted bias of every real step as the bundle predicts it,
times the amplification queueing gives a step error at that load (``sensitivity.py``), beside the errors observed.

    .venv/bin/python studies/2026-12-03-queueing/explain.py <publish root> <runs.csv> <bundle id> <errors.csv>

``bias``: 100 (sum of the predicted steps / sum of the measured - 1) over the first replicate's every step
(``vidur_ext/replay.py``): what a uniform step error would have to be to cost the simulated server the same time.
``amp``: the change of a latency's error per 1% of step time, between the sensitivity's lowest and highest factors.
``expected`` = ``amp`` x ``bias``; ``observed``: the error at factor 1 (the published comparison). Where the two
agree, the cell's error is the step error, amplified; where they do not, something else (the schedule, the real
run's spread) moves it. Run from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps

CELLS = ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90", "e2e_p50", "e2e_p90")


def main() -> int:
    root, runs_csv, bundle_id, errors_csv = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    bundle = load_profiling_root(root / "profiling" / bundle_id, check_tables=False)
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["replicate"] == 0) & (runs["setup"] == "sarathi")]
    bias, big = {}, {}
    for run in runs.itertuples():
        it = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
        d = replay_steps(bundle, it, model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                         cache_root=Path(app.paths.cache), dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
        bias[(run.workload, run.load_fraction)] = 100.0 * (d["predicted_ns"].sum() / d["measured_ns"].sum() - 1.0)
        b = d[d["batch_size"] > 32]
        big[(run.workload, run.load_fraction)] = (100.0 * (b["predicted_ns"].sum() / b["measured_ns"].sum() - 1.0)
                                                  if len(b) else float("nan"))
    err = pd.read_csv(errors_csv)
    lo, hi = err["factor"].min(), err["factor"].max()
    at = {f: err[err["factor"] == f].set_index(["workload", "load"]) for f in (lo, 1.0, hi)}
    rows = []
    for (workload, load), b in sorted(bias.items()):
        row = {"workload": workload, "load": load, "bias": b, "bias > 32 requests": big[(workload, load)]}
        for c in CELLS:
            amp = (at[hi].loc[(workload, load), c] - at[lo].loc[(workload, load), c]) / (100 * (hi - lo))
            row[f"{c} amp"] = amp
            row[f"{c} expected"] = amp * b
            row[f"{c} observed"] = at[1.0].loc[(workload, load), c]
        rows.append(row)
    df = pd.DataFrame(rows).set_index(["workload", "load"])
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(f"bias: time-weighted step error of every real step (%), and of the steps of more than 32 requests; "
          f"bundle {bundle_id}")
    print(df[["bias", "bias > 32 requests"]].round(1).to_string())
    for c in CELLS:
        print(f"\n{c}: amplification, expected = amp x bias, observed (%)")
        print(df[["bias", f"{c} amp", f"{c} expected", f"{c} observed"]].round(1).to_string())
    upto70 = df[df.index.get_level_values("load") <= 0.7]
    print("\nloads 10-70%: cells whose expected and observed errors are within 2 points of each other")
    for c in CELLS:
        close = (upto70[f"{c} expected"] - upto70[f"{c} observed"]).abs() <= 2.0
        print(f"  {c}: {int(close.sum())} of {len(close)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
