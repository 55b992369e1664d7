"""Vidur's execution model on a real run's own batches: every step the real engine took, predicted.

A comparison matches the steps both runs happen to share, which at high load are few (the two schedules drift
apart once one step differs). Predicting each real step from its recorded batch (``iteration_metrics.csv``:
``requests`` = ``r<id>:<chunk tokens>``, ``kv_tokens`` = each request's KV after the step) with the predictor
vidur-sim builds from the same bundle (its rows, step terms and row keys) measures the execution model on every
step, apart from the scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.io.schemas import parse_kv_tokens_field, parse_requests_field
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiling_root import ProfilingRoot
from gpu_simulate_test.vidur_ext.step_correction import step_terms


def step_shapes(requests: str, kv_tokens: str) -> tuple[tuple[int, int], ...]:
    """One step's ``(num_q_tokens, num_kv_tokens)`` per request, in its order, from its two fields."""
    q = [n for _, n in parse_requests_field(str(requests))]
    kv = parse_kv_tokens_field(str(kv_tokens))
    if len(q) != len(kv) or any(k < n or n < 1 for n, k in zip(q, kv)):
        raise ArtifactError(f"iteration_metrics.csv: step {requests!r} / {kv_tokens!r}: one KV length >= its tokens a request")
    return tuple(zip(q, kv))


def replay_steps(root: ProfilingRoot, iterations: pd.DataFrame, *, model: Any, hardware: Any, vidur: Any, seed: int,
                 cache_root: Path) -> pd.DataFrame:
    """Each step of ``iterations`` (a real run's ``iteration_metrics.csv``) with its measured and predicted time (ns),
    the signed error (%) and its requests and prompt tokens."""
    predictor = build_predictor(root.mlp_csv, root.attention_csv, model=model, hardware=hardware,
                                block_size=root.limits.block_size, grid=grid_for(root.limits, vidur),
                                cache_root=cache_root, vidur=vidur, seed=seed,
                                step_terms=step_terms(root.meta, str(root.path)))
    cache: dict[tuple[tuple[int, int], ...], int] = {}
    predicted, sizes, prompt = [], [], []
    for requests, kv in zip(iterations["requests"], iterations["kv_tokens"]):
        shapes = step_shapes(requests, kv)
        if shapes not in cache:
            cache[shapes] = int(round(predict_batch_time_s(predictor, list(shapes)) * 1e9))
        predicted.append(cache[shapes])
        sizes.append(len(shapes))
        prompt.append(sum(q for q, _ in shapes if q > 1))
    measured = (iterations["end_time_ns"] - iterations["start_time_ns"]).to_numpy(dtype=np.int64)
    out = pd.DataFrame({"iteration_id": iterations["iteration_id"].to_numpy(), "batch_size": sizes,
                        "prompt_tokens": prompt, "measured_ns": measured, "predicted_ns": predicted})
    out["error_pct"] = 100.0 * (out["predicted_ns"] - out["measured_ns"]) / out["measured_ns"]
    return out
