"""A request's first chunk, by when the request arrived: during the step before the one that runs it (so the engine
formed that step when the request joined, at the previous step's end: ``Engine._decide`` revises the step it had
packed ahead and packs it again, on the critical path), or before that step began (so it waited in the queue and its
step was formed and packed ahead, while the GPU ran the previous one), or with nothing in flight (the engine idle).

    .venv/bin/python studies/2026-12-02-h200-campaign-steps/first_chunks.py <bundle dir> <runs.csv> <publish root>

Same inputs as ``chunk_steps.py`` but the publish root (its ``real_runs/`` and ``workloads/``: the arrivals). Steps
holding exactly one chunk, a first one; median signed error of ``keys+head+wave+graphs`` (the reading of a native
bundle now) and median measured step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.vidur_ext.predictor import predict_batch_time_s
from gpu_simulate_test.vidur_ext.replay import step_shapes

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from the repository root: its tmp/cache
from step_variants import _predictors, run_buckets  # noqa: E402


def main() -> int:
    bundle, runs_csv, root = (Path(a) for a in sys.argv[1:4])
    runs = pd.read_csv(runs_csv)
    predictor = _predictors(bundle, run_buckets(root / "real_runs" / runs.real_run.iloc[0]))["keys+head+wave+graphs"]
    rows = []
    for run in runs[runs.replicate == 0].itertuples():
        real = root / "real_runs" / run.real_run
        meta = pd.read_json(real / "run_meta.json", typ="series")
        arrivals = pd.read_csv(root / "workloads" / meta["inputs"]["workload_id"] / "trace_intervals.csv")
        arrival = dict(zip(arrivals.request_id, arrivals.arrival_time_ns))
        it = pd.read_csv(real / "iteration_metrics.csv")
        prev_start = prev_end = None
        for rec in it.itertuples():
            shapes = step_shapes(rec.requests, rec.kv_tokens)
            ids = [int(r.split(":")[0][1:]) for r in str(rec.requests).split(";")]
            chunks = [(i, q, kv) for i, (q, kv) in zip(ids, shapes) if q != 1]
            idle = prev_end is None or rec.start_time_ns > prev_end
            if len(chunks) == 1 and chunks[0][1] == chunks[0][2]:
                a = arrival[chunks[0][0]]
                when = ("engine idle" if idle else "during the step before" if a >= prev_start
                        else "before the step before")
                measured = (rec.end_time_ns - rec.start_time_ns) / 1e6
                predicted = 1e3 * predict_batch_time_s(predictor, list(shapes), serial=False)
                rows.append((run.workload, run.load_fraction, when, len(shapes) - 1, measured,
                             100.0 * (predicted - measured) / measured))
            prev_start, prev_end = rec.start_time_ns, rec.end_time_ns
    df = pd.DataFrame(rows, columns=["workload", "load", "arrived", "decodes", "measured_ms", "error_pct"])
    pd.set_option("display.width", 200)
    print(df.groupby(["workload", "arrived"]).agg(error_pct=("error_pct", "median"), steps=("error_pct", "size"),
                                                  measured_ms=("measured_ms", "median")).round(2).to_string())
    print()
    print(df.groupby(["workload", "load", "arrived"]).error_pct.agg(["median", "size"]).round(1).unstack().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
