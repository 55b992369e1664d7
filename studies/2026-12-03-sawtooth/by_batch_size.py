"""Decode steps of one campaign point predicted from their own batch (``vidur_ext/replay.py``), by batch size: the
median error, measured and predicted step. With ``--between-measured`` (needs ``between_measured.patch`` applied),
the bundle is read with ``row_keys.decode_attention_batch: between_measured`` (a copy of it under /tmp).

    .venv/bin/python studies/2026-12-03-sawtooth/by_batch_size.py <publish root> <runs.csv> <bundle id> <load> [--between-measured]
"""
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps

root, runs_csv, bundle, load = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
path = root / "profiling" / bundle
if "--between-measured" in sys.argv:
    copy = Path("/tmp/sawtooth-bundle") / bundle
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(path, copy)
    meta = json.loads((copy / "profile_meta.json").read_text())
    meta["row_keys"]["decode_attention_batch"] = "between_measured"
    (copy / "profile_meta.json").write_text(json.dumps(meta, indent=2))
    path = copy
runs = pd.read_csv(runs_csv)
run = runs[(runs.replicate == 0) & (runs.setup == "sarathi") & (runs.workload == "lognormal")
           & (runs.load_fraction == load)].iloc[0]
app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
d = root / "real_runs" / run.real_run
it, rq = pd.read_csv(d / "iteration_metrics.csv"), pd.read_csv(d / "request_metrics.csv")
x = replay_steps(load_profiling_root(path, check_tables=False), it, model=app.model, hardware=app.hardware,
                 vidur=app.vidur, seed=int(app.seed), cache_root=Path(app.paths.cache),
                 dispatched=dict(zip(rq.request_id, rq.dispatch_time_ns)))
dec = x[x.prompt_tokens == 0]
agg = dict(n=("error_pct", "size"), err_pct=("error_pct", "median"),
           measured_us=("measured_ns", lambda v: v.median() / 1e3), predicted_us=("predicted_ns", lambda v: v.median() / 1e3))
print(f"{bundle}, sarathi lognormal {load:g}, decode steps from their own batch"
      + (" (decode attention between measured batch sizes)" if "--between-measured" in sys.argv else ""))
print(dec.groupby(pd.cut(dec.batch_size, [0, 8, 16, 32, 48, 64, 128]), observed=True).agg(**agg).round(2).to_string())
z = dec[(dec.batch_size > 24) & (dec.batch_size <= 64)]
print(z.groupby("batch_size").agg(**agg).round(1).T.to_string())
