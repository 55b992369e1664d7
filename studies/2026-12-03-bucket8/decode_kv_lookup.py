"""Vidur's decode-attention lookup (mean KV rounded up to 256) against the same rows read at the mean KV itself,
linearly between the lookup points on either side: every decode step of a campaign point predicted both ways by one
bundle, by requests. The second reading is patched in here, at run time, for this study only (the project's predictor
keeps Vidur's).

    .venv/bin/python studies/2026-12-03-bucket8/decode_kv_lookup.py <publish root> <runs.csv> <setup> <workload> <load> <bundle id>

(``publish root`` and ``runs.csv``: as for ``studies/2026-12-03-host-share/replay_by_batch.py``.)
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext import predictor as pred
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps

root, runs_csv, setup, workload, load, bundle = sys.argv[1:]
runs = pd.read_csv(runs_csv)
run = runs[(runs.replicate == 0) & (runs.setup == setup) & (runs.workload == workload)
           & (runs.load_fraction == float(load))].iloc[0]
app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                 f"backend.vidur_scheduler={setup}"])
d = Path(root) / "real_runs" / run.real_run
it, rq = pd.read_csv(d / "iteration_metrics.csv"), pd.read_csv(d / "request_metrics.csv")
vidur_lookup = pred._LocalProfileMixin._get_attention_decode_execution_time


def between(self, batch):
    """The decode row at the batch's mean KV, between Vidur's lookup points (as_measured batching, as native reads)."""
    size, kv = self._get_batch_decode_attention_params(batch)
    if size == 0:
        return 0.0
    rows, g = self._predictions["attn_decode"], int(self._config.kv_cache_prediction_granularity)
    mean = float(np.mean([k for q, k in zip(batch.num_q_tokens, batch.num_kv_tokens) if q == 1]))
    row = vidur_lookup(self, batch)
    below = rows.get((size, kv - g))
    return row if below is None else below + (mean - (kv - g)) / g * (row - below)


out = {}
for name, lookup in (("rounded up (Vidur)", vidur_lookup), ("interpolated", between)):
    pred._LocalProfileMixin._get_attention_decode_execution_time = lookup
    x = replay_steps(load_profiling_root(Path(root) / "profiling" / bundle, check_tables=False), it, model=app.model,
                     hardware=app.hardware, vidur=app.vidur, seed=int(app.seed), cache_root=Path(app.paths.cache),
                     dispatched=dict(zip(rq.request_id, rq.dispatch_time_ns)))
    x = x[(x.prompt_tokens == 0) & ~x.packed_at_start]  # decodes packed ahead
    out[name] = x.groupby(pd.cut(x.batch_size, [0, 1, 2, 4, 8, 16, 32, 64, 128]), observed=True).agg(
        steps=("error_pct", "size"), measured_us=("measured_ns", lambda v: v.median() / 1e3),
        predicted_us=("predicted_ns", lambda v: v.median() / 1e3), error_pct=("error_pct", "median"))
print(f"{bundle}, {setup} {workload} {load}: decode steps packed ahead, by requests\n"
      + pd.concat(out, axis=1).round(1).to_string())
