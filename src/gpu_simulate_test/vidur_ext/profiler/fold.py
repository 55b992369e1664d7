"""Fold what Vidur's per-layer operators miss into the operator rows, so that its own total includes it.

Vidur 0.0.26 sums ``num_layers x (per-layer ops)`` and nothing else: no embedding, final norm, LM head,
sampling or engine host work, and no cpu_overhead model. The gap between the measured whole iteration
and Vidur's prediction from the raw operator rows is fitted on the ``fit`` shapes as

    residual_ms = c_iter + c_token * num_tokens + c_decode * decode_requests + c_prefill * prefill_requests

and divided by the layer count into rows Vidur already reads (``specs/profiling_root.md`` gives the rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.schemas import PROFILE_STATS
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

# Vidur multiplies batched decode attention by (1 + this) for GQA models; folded per-request costs are pre-divided.
DECODE_BATCHING_OVERHEAD = 0.1
_FLOOR_MS = 1e-6  # rows stay positive: Vidur's random forest and our schema both expect times > 0


@dataclass(frozen=True)
class Overhead:
    c_iter_ms: float
    c_token_ms: float
    c_decode_ms: float
    c_prefill_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _features(shape: BatchShape) -> list[float]:
    return [1.0, float(shape.num_tokens), float(shape.decode_batch), 1.0 if shape.prefill_tokens else 0.0]


def fit_overhead(shapes: list[BatchShape], measured_ms: list[float], predicted_ms: list[float]) -> Overhead:
    """Least squares (minimum norm where the fit shapes cannot tell the terms apart)."""
    if not shapes:
        raise InputError("profile.fit lists no shape this backend can run; add prefill and decode shapes to the profile config")
    x = np.array([_features(s) for s in shapes])
    y = np.array(measured_ms) - np.array(predicted_ms)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return Overhead(*(float(c) for c in coef))


def _add(df: pd.DataFrame, op: str, rows: pd.Series, extra: np.ndarray) -> None:
    for s in PROFILE_STATS:
        if s == "std":
            continue
        col = f"time_stats.{op}.{s}"
        df.loc[rows, col] = np.maximum(df.loc[rows, col].to_numpy() + extra, _FLOOR_MS)


def fold(mlp: pd.DataFrame, attention: pd.DataFrame, overhead: Overhead, num_layers: int, gqa: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-iteration and per-token terms into ``add`` (num_tokens rows), per decode request into
    ``attn_decode`` (batch rows), per prefill request into every ``attn_prefill`` row; all divided by layers."""
    mlp, attention = mlp.copy(), attention.copy()
    every = pd.Series(True, index=mlp.index)
    _add(mlp, "add", every, (overhead.c_iter_ms + overhead.c_token_ms * mlp["num_tokens"].to_numpy()) / num_layers)
    dec = ~attention["is_prefill"]
    b = attention.loc[dec, "batch_size"].to_numpy()
    factor = np.where((b > 1) & gqa, 1 + DECODE_BATCHING_OVERHEAD, 1.0)
    _add(attention, "attn_decode", dec, overhead.c_decode_ms * b / factor / num_layers)
    pre = attention["is_prefill"]
    _add(attention, "attn_prefill", pre, np.full(int(pre.sum()), overhead.c_prefill_ms / num_layers))
    return mlp, attention
