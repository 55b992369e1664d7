"""The campaign's steps that hold a prompt chunk, by how many chunks and how many of them are a request's first,
predicted through the bundle read as a native bundle since ``9f8324f`` is, chunks summed and token rows at exact
tokens (``keys+head`` of ``step_variants.py``), and as it is read now (``keys+head+wave+graphs``).

    .venv/bin/python studies/2026-12-02-h200-campaign-steps/chunk_steps.py <bundle dir> <runs.csv> <real_runs dir>

Same inputs as ``step_variants.py`` (first replicates only). Prints the median signed error and the count of steps by
(chunks, first chunks), then the steps with a first chunk by its tokens and the step's decodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.vidur_ext.predictor import predict_batch_time_s
from gpu_simulate_test.vidur_ext.replay import step_shapes

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from the repository root: its tmp/cache
from step_variants import _predictors, run_buckets  # noqa: E402


def main() -> int:
    bundle, runs_csv, real_dir = (Path(a) for a in sys.argv[1:4])
    runs = pd.read_csv(runs_csv)
    predictors = _predictors(bundle, run_buckets(real_dir / runs.real_run.iloc[0]))
    summed, waved = predictors["keys+head"], predictors["keys+head+wave+graphs"]
    rows = []
    for run in runs[runs.replicate == 0].itertuples():
        it = pd.read_csv(real_dir / run.real_run / "iteration_metrics.csv")
        for rec in it.itertuples():
            shapes = list(step_shapes(rec.requests, rec.kv_tokens))
            chunks = [(q, kv) for q, kv in shapes if q != 1]
            if not chunks:
                continue
            rows.append((run.workload, len(chunks), sum(1 for q, kv in chunks if q == kv),
                         sum(q for q, kv in chunks if q == kv), len(shapes) - len(chunks),
                         (rec.end_time_ns - rec.start_time_ns) / 1e6, 1e3 * predict_batch_time_s(summed, shapes, serial=False),
                         1e3 * predict_batch_time_s(waved, shapes, serial=False)))
    df = pd.DataFrame(rows, columns=["workload", "chunks", "first", "first_tokens", "decodes", "measured_ms",
                                     "predicted_ms", "wave_ms"])
    df["error_pct"] = 100.0 * (df.predicted_ms - df.measured_ms) / df.measured_ms
    df["wave_error_pct"] = 100.0 * (df.wave_ms - df.measured_ms) / df.measured_ms
    df["first_tokens_bin"] = pd.cut(df.first_tokens, [0, 128, 256, 384, 480, 511, 512])
    df["decodes_bin"] = pd.cut(df.decodes, [-1, 0, 4, 16, 64, 128])
    pd.set_option("display.width", 200)
    for wl in sorted(df.workload.unique()):
        d = df[df.workload == wl]
        print(f"== {wl}: steps with a chunk by (chunks, first chunks): median error % (chunks summed, in one wave), "
              "steps, median measured ms")
        print(d.groupby(["chunks", "first"]).agg(error_pct=("error_pct", "median"),
                                                 wave_error_pct=("wave_error_pct", "median"), steps=("error_pct", "size"),
                                                 measured_ms=("measured_ms", "median")).round(2).to_string())
        f = d[(d["first"] == 1) & (d.chunks == 1)]
        print(f"== {wl}: one chunk, a first one, by its tokens and the step's decodes")
        print(f.groupby(["first_tokens_bin", "decodes_bin"], observed=True).error_pct.agg(["median", "size"])
              .round(1).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
