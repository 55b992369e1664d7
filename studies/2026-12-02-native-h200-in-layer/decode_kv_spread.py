"""Matched decode steps of a comparison (real vs vidur-sim), grouped by batch size and by how uneven the batch's KV
lengths are (longest / mean): Vidur 0.0.26 predicts decode attention from the batch's mean KV, while the engine's
split-KV attention waits for its longest sequence. Prints count, median mean and longest KV, median real and
simulated step (ms), median error (%).

    .venv/bin/python studies/2026-12-02-native-h200-in-layer/decode_kv_spread.py <root> <comparison id>...

root: where the comparison and its real run are (tmp/publish-h200-native after publish or compare_first_replicates.py).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

root = Path(sys.argv[1])
for cmp_id in sys.argv[2:]:
    pairs = pd.read_csv(root / "comparisons" / cmp_id / "tables" / "iteration_pairs.csv")
    real_id = cmp_id.split("--")[0].removeprefix("cmp-")
    steps = pd.read_csv(root / "real_runs" / real_id / "iteration_metrics.csv").set_index("iteration_id")
    d = pairs[pairs.num_prefill_tokens == 0].copy()
    kv = steps.loc[d.real_iteration_id, "kv_tokens"].map(lambda s: np.array([int(x) for x in str(s).split(";")]))
    d["kv_mean"] = [k.mean() for k in kv]
    d["kv_max"] = [k.max() for k in kv]
    d["uneven"] = d.kv_max / d.kv_mean
    d["err"] = 100 * (d.sim_step_ns - d.real_step_ns) / d.real_step_ns
    g = d.groupby([pd.cut(d.batch_size, [0, 1, 2, 4, 8, 16, 32, 128]),
                   pd.cut(d.uneven, [0.99, 1.5, 3, 1e9], labels=["<1.5", "1.5-3", ">3"])], observed=True).agg(
        n=("err", "size"), kv_mean=("kv_mean", "median"), kv_max=("kv_max", "median"),
        real_ms=("real_step_ns", lambda x: x.median() / 1e6), sim_ms=("sim_step_ns", lambda x: x.median() / 1e6),
        err_pct=("err", "median"))
    print(cmp_id)
    print(g.round(2).to_string(), "\n")
