"""A published point's replicate (the first unless told), every real step predicted from its own batch with its setup's bundle
(``vidur_ext/replay.py``): what ``tail_steps.py`` and ``lone_prompts.py`` both read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps


def replayed(root: Path, folder: Path, setup: str, workload: str, load: float,
             replicate: int = 0) -> tuple[Any, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The point's ``replicate`` row of ``runs.csv``, its ``iteration_metrics.csv``, ``request_metrics.csv`` and
    replayed steps (one row per iteration, in order), from ``publish``'s root and the result folder's tables."""
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    run = runs[(runs["setup"] == setup) & (runs["workload"] == workload) & (runs["load_fraction"] == load)
               & (runs["replicate"] == replicate)].iloc[0]
    bundle_id = pd.read_csv(folder / "tables" / "bundle_test.csv").groupby("setup")["bundle_id"].first()[setup]
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    bundle = load_profiling_root(root / "profiling" / bundle_id, check_tables=False)
    it = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
    reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
    steps = replay_steps(bundle, it, model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                         cache_root=Path(app.paths.cache),
                         dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
    return run, it, reqs, steps
