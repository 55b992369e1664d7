"""Fold what Vidur's per-layer operators miss (or overcount) into the operator rows, so that its own total
matches the engine's measured iterations.

Vidur 0.0.26 sums ``num_layers x (per-layer ops)`` and nothing else: no embedding, final norm, LM head,
sampling or engine host work, and no cpu_overhead model. Operators timed one by one can also cost *more*
than the engine's real iteration (a CUDA-graph replay of the same kernels is far cheaper than launching them
eagerly). So the measured whole iteration of every ``fit`` shape is fitted as

    measured_ms = scale * vidur_raw_ms + c_iter + c_token * num_tokens_8 + c_decode * decode_requests
                  + c_prefill * prefill_requests

(``num_tokens_8``: rounded up to a multiple of 8, as Vidur looks the rows up) with every coefficient >= 0:
a negative correction is carried by ``scale < 1``, never by a negative term, so no folded row has to be
clipped and Vidur predicts exactly the fitted model. The loss is the sum of absolute *relative* errors (the
acceptance metric is a median relative error, and one odd fit iteration, such as a step that captured a
CUDA graph, must not drag the fit). Every operator row is multiplied by ``scale`` and the terms are divided
by the layer count into rows Vidur already reads (``specs/profiling_root.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.schemas import PROFILE_STATS
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

# Vidur multiplies batched decode attention by (1 + this) for GQA models; folded per-request costs are pre-divided.
DECODE_BATCHING_OVERHEAD = 0.1
VIDUR_TOKEN_ROUNDING = 8  # Vidur rounds an iteration's num_tokens up to a multiple of this for the mlp.csv lookups


def vidur_tokens(num_tokens: int) -> int:
    """An iteration's tokens as Vidur looks its mlp.csv rows up: rounded up to a multiple of ``VIDUR_TOKEN_ROUNDING``."""
    return -(-int(num_tokens) // VIDUR_TOKEN_ROUNDING) * VIDUR_TOKEN_ROUNDING


_FLOOR_MS = 1e-6  # rows stay positive: Vidur's random forest and our schema both expect times > 0
# Tie-break between equally good fits (e.g. c_iter vs c_decode + c_prefill when every fit shape has one request):
# prefer the smallest coefficients; small enough never to trade off fit error.
_TIE_BREAK = 1e-6


@dataclass(frozen=True)
class Overhead:
    scale: float
    c_iter_ms: float
    c_token_ms: float
    c_decode_ms: float
    c_prefill_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def terms(self) -> np.ndarray:
        return np.array([self.c_iter_ms, self.c_token_ms, self.c_decode_ms, self.c_prefill_ms])


def _features(shape: BatchShape) -> list[float]:
    """The terms' multipliers as Vidur will apply them: it looks num_tokens rows up rounded up to a multiple of 8."""
    return [1.0, float(vidur_tokens(shape.num_tokens)), float(shape.decode_batch), 1.0 if shape.prefill_tokens else 0.0]


def fit_overhead(shapes: list[BatchShape], measured_ms: list[float], predicted_ms: list[float]) -> Overhead:
    """Least absolute relative error, all coefficients >= 0 (a linear program)."""
    if not shapes:
        raise InputError("profile.fit lists no shape this backend can run; add prefill and decode shapes to the profile config")
    y = np.asarray(measured_ms, dtype=float)
    raw = np.asarray(predicted_ms, dtype=float)
    if len(y) != len(shapes) or len(raw) != len(shapes):
        raise ValueError(f"{len(shapes)} fit shapes but {len(y)} measured and {len(raw)} predicted times")
    if not (np.all(np.isfinite(y)) and np.all(y > 0) and np.all(np.isfinite(raw)) and np.all(raw >= 0)):
        raise InputError(f"fit iterations need positive measured times and finite Vidur predictions; got {y.tolist()} / {raw.tolist()}")
    try:
        theta = least_abs_relative(np.column_stack([raw, [_features(s) for s in shapes]]), y)
    except ValueError as exc:
        raise InputError(f"the fold of the fit shapes {[str(s) for s in shapes]} has no solution: {exc}") from exc
    return Overhead(*(float(c) for c in theta))


def least_abs_relative(columns: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``theta >= 0`` minimising ``sum |columns @ theta / y - 1|`` (a linear program); ValueError if it has no solution."""
    return least_abs(columns / y[:, None], np.ones(len(y)), bounds=(0, None), tie_break=_TIE_BREAK)


def least_abs(a: np.ndarray, b: np.ndarray, *, bounds: tuple[Optional[float], Optional[float]],
              a_ub: Optional[np.ndarray] = None, b_ub: Optional[np.ndarray] = None, tie_break: float = 0.0) -> np.ndarray:
    """``theta`` within ``bounds`` (each coefficient) and ``a_ub @ theta <= b_ub`` minimising ``sum |a @ theta - b|``
    (plus ``tie_break * sum(theta)``), as a linear program; ValueError if it has no solution."""
    from scipy.optimize import linprog

    n, k = a.shape
    # variables: theta (k) then e (n) with e >= |a @ theta - b|; minimise sum(e).
    cost = np.concatenate([np.full(k, tie_break), np.ones(n)])
    rows = [np.block([[a, -np.eye(n)], [-a, -np.eye(n)]])]
    rhs = [np.concatenate([b, -b])]
    if a_ub is not None and b_ub is not None and len(a_ub):
        rows.append(np.hstack([a_ub, np.zeros((len(a_ub), n))]))
        rhs.append(b_ub)
    res = linprog(cost, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=[bounds] * k + [(0, None)] * n,
                  method="highs")
    if res.status != 0:
        raise ValueError(res.message)
    return res.x[:k]


def _scale(df: pd.DataFrame, factor: float) -> None:
    for col in (c for c in df.columns if c.startswith("time_stats.")):
        values = df[col].to_numpy(dtype=float) * factor
        df[col] = values if col.endswith(".std") else np.where(np.isnan(values), values, np.maximum(values, _FLOOR_MS))


def _add(df: pd.DataFrame, op: str, rows: pd.Series, extra: np.ndarray) -> None:
    for s in PROFILE_STATS:
        if s == "std":
            continue
        col = f"time_stats.{op}.{s}"
        df.loc[rows, col] = df.loc[rows, col].to_numpy() + extra


def fold(mlp: pd.DataFrame, attention: pd.DataFrame, overhead: Overhead, num_layers: int, gqa: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every operator row times ``scale``; then per-iteration and per-token terms into ``add`` (num_tokens rows),
    per decode request into ``attn_decode`` (batch rows), per prefill request into every ``attn_prefill`` row;
    all divided by layers."""
    if min(overhead.scale, *overhead.terms) < 0:
        raise ValueError(f"fold coefficients must be >= 0 (negative terms would be clipped): {overhead}")
    mlp, attention = mlp.copy(), attention.copy()
    _scale(mlp, overhead.scale)
    _scale(attention, overhead.scale)
    every = pd.Series(True, index=mlp.index)
    _add(mlp, "add", every, (overhead.c_iter_ms + overhead.c_token_ms * mlp["num_tokens"].to_numpy()) / num_layers)
    dec = ~attention["is_prefill"]
    b = attention.loc[dec, "batch_size"].to_numpy()
    factor = np.where((b > 1) & gqa, 1 + DECODE_BATCHING_OVERHEAD, 1.0)
    _add(attention, "attn_decode", dec, overhead.c_decode_ms * b / factor / num_layers)
    pre = attention["is_prefill"]
    _add(attention, "attn_prefill", pre, np.full(int(pre.sum()), overhead.c_prefill_ms / num_layers))
    return mlp, attention
