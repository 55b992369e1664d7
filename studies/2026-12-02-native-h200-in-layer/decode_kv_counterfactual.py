"""Vidur's own prediction of each matched decode step, twice: from the batch's KV lengths as they were (Vidur takes
their mean for attention), and with every request at the batch's longest KV (as a split-KV kernel that splits every
sequence alike behaves at a small batch). If the second erases the growth of the error with KV unevenness
(decode_kv_spread.txt), the mean is what Vidur misses. The bundle's operators only (it has no step correction).

    .venv/bin/python studies/2026-12-02-native-h200-in-layer/decode_kv_counterfactual.py <bundle dir> <root> <cmp id>...

bundle dir: call4-bundle's archive unpacked (profiling/<id>/); root: where compare_first_replicates.py left the
comparisons and real runs (tmp/publish-h200-native).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from vidur.entities import Batch, Request

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid

bundle, root = Path(sys.argv[1]), Path(sys.argv[2])
cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h200", "backend=native", "profile=h200"])
limits = build_grid(cfg.model, cfg.backend, cfg.profile).limits
predictor = build_predictor(bundle / "mlp.csv", bundle / "attention.csv", model=cfg.model, hardware=cfg.hardware,
                            block_size=limits.block_size, grid=grid_for(limits), cache_root=Path(cfg.paths.cache),
                            seed=cfg.seed)


def predict_ns(kv: list[int]) -> float:
    requests = [Request(arrived_at=0.0, num_prefill_tokens=k, num_decode_tokens=1) for k in kv]
    return predictor.get_execution_time(Batch(0, requests, [1] * len(kv), kv), 0).total_time * 1e9


for cmp_id in sys.argv[3:]:
    pairs = pd.read_csv(root / "comparisons" / cmp_id / "tables" / "iteration_pairs.csv")
    steps = pd.read_csv(root / "real_runs" / cmp_id.split("--")[0].removeprefix("cmp-") / "iteration_metrics.csv")
    d = pairs[pairs.num_prefill_tokens == 0].copy()
    kvs = [[int(x) for x in str(s).split(";")] for s in steps.set_index("iteration_id").loc[d.real_iteration_id, "kv_tokens"]]
    d["uneven"] = [max(k) / np.mean(k) for k in kvs]
    d["as_is"] = [predict_ns(k) for k in kvs]
    d["longest"] = [predict_ns([max(k)] * len(k)) for k in kvs]
    for col in ("sim_step_ns", "as_is", "longest"):
        d[f"err_{col}"] = 100 * (d[col] - d.real_step_ns) / d.real_step_ns
    g = d.groupby([pd.cut(d.batch_size, [0, 1, 2, 4, 8, 16, 32, 128]),
                   pd.cut(d.uneven, [1, 1.5, 3, np.inf], right=False, labels=["1-1.5", "1.5-3", ">=3"])],
                  observed=True).agg(n=("uneven", "size"), sim=("err_sim_step_ns", "median"),
                                     as_is=("err_as_is", "median"), longest_kv=("err_longest", "median"))
    print(cmp_id, f"(as_is vs the simulation's own step: median |diff| "
          f"{np.median(np.abs(d.as_is - d.sim_step_ns) / d.sim_step_ns) * 100:.2f}%)")
    print(g.round(1).to_string(), "\n")
