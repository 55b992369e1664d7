"""A bundle's host-grid decodes (``decode:n x 512``, wall as the profiler timed them) against the campaign runs' own
decode steps of n requests at a mean KV of 400-700, packed ahead (wall from the step before's end), median, for the
published bundles of both setups and the lognormal runs at 10% and 30% load (both replicates). Needs a publish root
(the runbook: ``publish`` writes ``tmp/publish-h200-native/``).

    .venv/bin/python studies/2026-12-03-handover-state/grid_vs_runs.py [publish root]   # > grid_vs_runs.txt
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

root = Path(sys.argv[1] if len(sys.argv) > 1 else "tmp/publish-h200-native")
folder = Path("docs/results/h200-qwen3-0.6b-native")
runs = pd.read_csv(folder / "tables" / "runs.csv")
bundles = pd.read_csv(folder / "tables" / "bundle_test.csv").groupby("setup").bundle_id.first()
BATCHES = (1, 2, 4, 8)
for setup in ("sarathi", "vllm"):
    meta = json.loads((root / "profiling" / bundles[setup] / "profile_meta.json").read_text())
    grid = meta["host_timing"]
    walls = {s: w * 1e3 for s, w in zip(grid["shape"], grid["wall_ms"])}
    hosts = {s: h * 1e3 for s, h in zip(grid["shape"], grid["host_ms"])}
    print(f"{setup} bundle {bundles[setup]} ({meta['host_load'].get('gpu', '?')[4:16]}), grid wall (host) us: "
          + ", ".join(f"{b}: {walls[f'decode:{b}x512']:.0f} ({hosts[f'decode:{b}x512']:.0f})" for b in BATCHES))
    for load in (0.1, 0.3):
        for rep in (0, 1):
            r = runs[(runs.setup == setup) & (runs.workload == "lognormal") & (runs.load_fraction == load)
                     & (runs.replicate == rep)].iloc[0]
            it = pd.read_csv(root / "real_runs" / r.real_run / "iteration_metrics.csv", dtype={"kv_tokens": str})
            wall = it.end_time_ns.diff()
            ahead = it.start_time_ns <= it.end_time_ns.shift()  # decided at the step before's end: packed ahead
            kv = it.kv_tokens.map(lambda s: np.mean([int(x) for x in s.split(";")]))
            cells = []
            for b in BATCHES:
                m = (it.batch_size == b) & (it.num_prefill_tokens == 0) & ahead & (kv > 400) & (kv < 700)
                cells.append(f"{b}: {wall[m].median() / 1e3:.0f} ({m.sum()} steps)" if m.sum() else f"{b}: -")
            print(f"  run lognormal {load:g} r{rep} ({r.gpu_uuid[4:16]}) wall us: " + ", ".join(cells))
