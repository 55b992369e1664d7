"""Matched iterations of a comparison (real vs vidur-sim, the same batch in both runs), grouped by kind (decode,
prefill, mixed) and batch size: count, median real and simulated step (ms), median error (%).

    .venv/bin/python studies/2026-12-02-native-h200-pipelined/iteration_errors.py <comparison dir>...

The comparisons are what ``bash scripts/h200_native_sweep.sh publish`` wrote under its root
(tmp/publish-h200-native/comparisons/cmp-<real>--vidur-...).
"""

import sys

import numpy as np
import pandas as pd

for folder in sys.argv[1:]:
    p = pd.read_csv(f"{folder}/tables/iteration_pairs.csv")
    p["real"], p["sim"] = p.real_step_ns / 1e6, p.sim_step_ns / 1e6
    p["err"] = 100 * (p.sim - p.real) / p.real
    p["kind"] = np.where(p.num_prefill_tokens == 0, "decode", np.where(p.num_decode_tokens == 0, "prefill", "mixed"))
    g = p.groupby(["kind", pd.cut(p.batch_size, [0, 1, 2, 4, 8, 16, 32, 64, 128])], observed=True).agg(
        n=("err", "size"), real_ms=("real", "median"), sim_ms=("sim", "median"), err_pct=("err", "median"))
    print(folder.rstrip("/").split("/")[-1])
    print(g.round(2).to_string(), "\n")
