"""The bundle's own measured shapes (``iterations.csv``: fit, validation and test, each at the KV its steps had),
predicted under each reading of ``step_variants.py``: which readings the profiler's whole steps see too.

    .venv/bin/python studies/2026-12-02-h200-campaign-steps/profile_shapes.py <bundle dir> <a real run dir>

The real run gives the engine's graph buckets (its ``run_meta.json``) for the last reading.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.vidur_ext.predictor import predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from the repository root: its tmp/cache
from step_variants import _predictors, run_buckets  # noqa: E402


def main() -> int:
    bundle, real_run = Path(sys.argv[1]), Path(sys.argv[2])
    predictors = _predictors(bundle, run_buckets(real_run))
    rows = []
    for r in pd.read_csv(bundle / "iterations.csv").itertuples():
        shape = BatchShape.parse(r.shape)
        if not pd.isna(r.decode_kv_measured):
            shape = shape.with_decode_kv(int(round(r.decode_kv_measured)))
        batch = list(zip(*shape.vidur_batch()))
        ms = r.trimmed_mean_ns / 1e6
        rows.append((r.shape, r.role, round(ms, 3),
                     *(round(100.0 * (1e3 * predict_batch_time_s(p, batch, serial=False) - ms) / ms, 1) for p in predictors.values())))
    pd.set_option("display.width", 250)
    print("signed error (%) of each shape's predicted step, per reading")
    print(pd.DataFrame(rows, columns=["shape", "set", "measured_ms", *predictors]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
