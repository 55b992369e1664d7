"""The vllm setup's eager steps (a prompt of more than 512 tokens: no graph holds it) by load: their wall times by
prompt tokens, first replicate of each point.

    .venv/bin/python studies/2026-12-03-host-share/eager_by_load.py <publish root> <runs.csv>

(``publish root`` and ``runs.csv``: a ``publish`` of a copy of the campaign's result folder, as for
``replay_by_batch.py``.)
"""

import sys
from pathlib import Path

import pandas as pd

root, runs_csv = sys.argv[1:]
runs = pd.read_csv(runs_csv)
for _, run in runs[(runs.replicate == 0) & (runs.setup == "vllm")].sort_values("load_fraction").iterrows():
    it = pd.read_csv(Path(root) / "real_runs" / run.real_run / "iteration_metrics.csv")
    it["ms"] = (it.end_time_ns - it.start_time_ns) / 1e6
    eager = it[it.num_prefill_tokens > 512]
    g = eager.groupby(pd.cut(eager.num_prefill_tokens, [512, 1024, 2048, 4096]), observed=True).ms.describe()
    print(f"load {run.load_fraction:g}: {len(eager)} eager steps, median {eager.ms.median():.1f} ms\n"
          f"{g[['count', '25%', '50%', '75%']].round(1).to_string()}\n")
