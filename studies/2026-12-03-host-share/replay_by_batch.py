"""Every real step of a campaign point predicted from its own batch by each bundle given, by kind and requests.

    .venv/bin/python studies/2026-12-03-host-share/replay_by_batch.py <publish root> <runs.csv> <setup> <workload> <load> <bundle id>...

(``publish root`` and ``runs.csv``: a ``publish`` of a copy of the campaign's result folder, the runbook's last section,
with every bundle named unpacked into its ``profiling/``.)
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps

root, runs_csv, setup, workload, load, *bundles = sys.argv[1:]
runs = pd.read_csv(runs_csv)
run = runs[(runs.replicate == 0) & (runs.setup == setup) & (runs.workload == workload)
           & (runs.load_fraction == float(load))].iloc[0]
app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                 f"backend.vidur_scheduler={setup}"])
d = Path(root) / "real_runs" / run.real_run
it, rq = pd.read_csv(d / "iteration_metrics.csv"), pd.read_csv(d / "request_metrics.csv")
for b in bundles:
    x = replay_steps(load_profiling_root(Path(root) / "profiling" / b, check_tables=False), it, model=app.model,
                     hardware=app.hardware, vidur=app.vidur, seed=int(app.seed), cache_root=Path(app.paths.cache),
                     dispatched=dict(zip(rq.request_id, rq.dispatch_time_ns)))
    x["kind"] = np.where(x.prompt_tokens > 0, np.where(x.packed_at_start, "chunk@start", "chunk ahead"),
                         np.where(x.packed_at_start, "decode@start", "decode"))
    x["requests"] = pd.cut(x.batch_size, [0, 1, 2, 4, 8, 16, 32, 64, 128])
    x["prompt"] = pd.cut(x.prompt_tokens, [-1, 0, 256, 512, 1024, 2048, 4096])
    g = x.groupby(["kind", "requests", "prompt"], observed=True).agg(
        steps=("error_pct", "size"), measured_us=("measured_ns", lambda v: v.median() / 1e3),
        predicted_us=("predicted_ns", lambda v: v.median() / 1e3), error_pct=("error_pct", "median"))
    e = x.error_pct
    print(f"{b}: |error| median {e.abs().median():.2f}%, signed {e.median():+.2f}%, summed "
          f"{100 * (x.predicted_ns.sum() / x.measured_ns.sum() - 1):+.2f}%\n{g[g.steps > 20].round(1).to_string()}\n")
