"""The campaign's own steps of one decode (packed ahead: less than 200 us after the step before ended): their wall time
from the step before's end, per run, first replicates of lognormal at 10% and 50% load. Needs a publish root (the
runbook: ``publish`` writes ``tmp/publish-h200-native/``).

    .venv/bin/python studies/2026-12-03-vllm-handover/runs_decode1.py [publish root]
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

root = Path(sys.argv[1] if len(sys.argv) > 1 else "tmp/publish-h200-native")
runs = pd.read_csv("docs/results/h200-qwen3-0.6b-native/tables/runs.csv")
for setup in ("sarathi", "vllm"):
    for load in (0.1, 0.5):
        r = runs[(runs.setup == setup) & (runs.workload == "lognormal") & (runs.load_fraction == load)
                 & (runs.replicate == 0)].iloc[0]
        it = pd.read_csv(root / "real_runs" / r.real_run / "iteration_metrics.csv")
        wall = it.end_time_ns.diff()
        gap = it.start_time_ns - it.end_time_ns.shift()
        w = wall[(it.batch_size == 1) & (it.num_prefill_tokens == 0) & (gap < 200_000)] / 1e3
        p10, p50, p90 = np.percentile(w, [10, 50, 90])
        print(f"{setup} lognormal {load:g} ({r.gpu_uuid[:12]}): {len(w)} steps, wall us p10 {p10:.0f} p50 {p50:.0f} p90 {p90:.0f}")
