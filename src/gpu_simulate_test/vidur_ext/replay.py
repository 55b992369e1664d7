"""Vidur's execution model on a real run's own batches: every step the real engine took, predicted.

A comparison matches the steps both runs happen to share, which at high load are few (the two schedules drift
apart once one step differs). Predicting each real step from its recorded batch (``iteration_metrics.csv``:
``requests`` = ``r<id>:<chunk tokens>``, ``kv_tokens`` = each request's KV after the step) with the predictor
vidur-sim builds from the same bundle (its rows, step terms and row keys) measures the execution model on every
step, apart from the scheduler. Each step is predicted as the engine packed it (ahead, or at its start: the bundle's
host term), read from the run's dispatch times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

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


def steps_packed_at_start(iterations: pd.DataFrame, dispatched: Mapping[int, int]) -> np.ndarray:
    """Per step of a real run (``iteration_metrics.csv``, in order), whether the native engine packed it at its start
    rather than while the step before it ran: it holds a request handed to the engine (``dispatched``: request id ->
    ``dispatch_time_ns``) after the step before it started (the engine forms a step ahead from the requests queued
    when the step before started: ``engine/engine.py``), or it is the run's first. vidur-sim's rule on its own
    batches (``predictor._LocalProfileMixin._serial``)."""
    starts = iterations["start_time_ns"].to_numpy(dtype=np.int64)
    out = np.ones(len(iterations), dtype=bool)
    for k, requests in enumerate(iterations["requests"]):
        if k == 0:
            continue
        ids = [rid for rid, _ in parse_requests_field(str(requests))]
        missing = [rid for rid in ids if rid not in dispatched]
        if missing:
            raise ArtifactError(f"iteration_metrics.csv: step {k} runs requests {missing[:5]} the run's requests lack")
        out[k] = any(dispatched[rid] > starts[k - 1] for rid in ids)
    return out


def replay_steps(root: ProfilingRoot, iterations: pd.DataFrame, *, model: Any, hardware: Any, vidur: Any, seed: int,
                 cache_root: Path, dispatched: Optional[Mapping[int, int]] = None,
                 at_start: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Each step of ``iterations`` (a real run's ``iteration_metrics.csv``) with its measured and predicted time (ns),
    the signed error (%), its requests and prompt tokens, and whether the engine packed it at its start: from
    ``dispatched`` (the run's ``dispatch_time_ns`` by request id, :func:`steps_packed_at_start`) or given as
    ``at_start`` (one flag a step), one of the two."""
    if (dispatched is None) == (at_start is None):
        raise ValueError("replay_steps needs either the run's dispatch times or each step's packing, not both")
    predictor = build_predictor(root.mlp_csv, root.attention_csv, model=model, hardware=hardware,
                                block_size=root.limits.block_size, grid=grid_for(root.limits, vidur),
                                cache_root=cache_root, vidur=vidur, seed=seed,
                                step_terms=step_terms(root.meta, str(root.path)))
    if at_start is None:
        at_start = steps_packed_at_start(iterations, dispatched or {})
    elif len(at_start) != len(iterations):
        raise ValueError(f"{len(at_start)} packing flags for {len(iterations)} steps")
    cache: dict[tuple[tuple[tuple[int, int], ...], bool], int] = {}
    predicted, sizes, prompt = [], [], []
    for requests, kv, serial in zip(iterations["requests"], iterations["kv_tokens"], at_start):
        shapes = step_shapes(requests, kv)
        key = (shapes, bool(serial))
        if key not in cache:
            cache[key] = int(round(predict_batch_time_s(predictor, list(shapes), serial=bool(serial)) * 1e9))
        predicted.append(cache[key])
        sizes.append(len(shapes))
        prompt.append(sum(q for q, _ in shapes if q > 1))
    measured = (iterations["end_time_ns"] - iterations["start_time_ns"]).to_numpy(dtype=np.int64)
    out = pd.DataFrame({"iteration_id": iterations["iteration_id"].to_numpy(), "batch_size": sizes,
                        "prompt_tokens": prompt, "packed_at_start": at_start, "measured_ns": measured,
                        "predicted_ns": predicted})
    out["error_pct"] = 100.0 * (out["predicted_ns"] - out["measured_ns"]) / out["measured_ns"]
    return out
