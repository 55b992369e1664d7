"""The two baselines a bundle must beat on its test shapes (``specs/profiling_root.md``, "Verdict").

Both are fitted on the bundle's fit shapes only, the shapes its own correction was fitted on: a **constant** step (the
median of the fit shapes' measured steps) and a step **linear in tokens** (least squares of the measured step on the
shape's tokens). A bundle that predicts its test shapes no better than these adds nothing over a constant or a line:
the operator model must earn its place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

AbsErrors = tuple[Optional[float], Optional[float]]  # median and P90 of |error| in %, None without shapes


@dataclass(frozen=True)
class Baselines:
    constant_ms: float  # median of the fit shapes' measured steps
    intercept_ms: float  # the line: intercept_ms + per_token_ms * num_tokens
    per_token_ms: float

    def constant(self, shapes: list[BatchShape]) -> np.ndarray:
        return np.full(len(shapes), self.constant_ms)

    def linear(self, shapes: list[BatchShape]) -> np.ndarray:
        return self.intercept_ms + self.per_token_ms * np.array([s.num_tokens for s in shapes], dtype=float)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_baselines(shapes: list[BatchShape], measured_ms: list[float]) -> Baselines:
    """Both baselines from the fit shapes (a line through a single token count is flat: its slope is 0)."""
    if not shapes:
        raise InputError("profile.fit lists no shape this backend can run; the baselines need fit shapes")
    y = np.asarray(measured_ms, dtype=float)
    tokens = np.array([s.num_tokens for s in shapes], dtype=float)
    if len(set(tokens.tolist())) < 2:
        return Baselines(float(np.median(y)), float(y.mean()), 0.0)
    slope, intercept = np.polyfit(tokens, y, 1)
    return Baselines(float(np.median(y)), float(intercept), float(slope))


def signed_errors_pct(predicted_ms: np.ndarray, measured_ms: np.ndarray) -> np.ndarray:
    return 100.0 * (np.asarray(predicted_ms, dtype=float) - measured_ms) / np.asarray(measured_ms, dtype=float)


def abs_error_stats(errors_pct: np.ndarray) -> AbsErrors:
    """Median and P90 of |error| (numpy's linear interpolation between order statistics)."""
    if len(errors_pct) == 0:
        return None, None
    med, p90 = np.percentile(np.abs(np.asarray(errors_pct, dtype=float)), [50.0, 90.0])
    return float(med), float(p90)


def baseline_table(names: list[str], shapes: list[BatchShape], measured_ms: np.ndarray, bundle_ms: np.ndarray,
                   baselines: Baselines) -> pd.DataFrame:
    """Per test shape (``names`` as configured): measured, the bundle and both baselines, each with its signed error
    (``held_out_check.csv``; ns columns as integers)."""
    measured_ms, bundle_ms = np.asarray(measured_ms, dtype=float), np.asarray(bundle_ms, dtype=float)
    const, line = baselines.constant(shapes), baselines.linear(shapes)
    return pd.DataFrame({
        "shape": list(names),
        "measured_ns": np.rint(measured_ms * 1e6).astype(np.int64),
        "predicted_ns": np.rint(bundle_ms * 1e6).astype(np.int64),
        "error_pct": signed_errors_pct(bundle_ms, measured_ms),
        "constant_ns": np.rint(const * 1e6).astype(np.int64),
        "constant_error_pct": signed_errors_pct(const, measured_ms),
        "linear_ns": np.rint(np.maximum(line, 0.0) * 1e6).astype(np.int64),
        "linear_error_pct": signed_errors_pct(line, measured_ms),
    })


def baseline_record(table: pd.DataFrame, baselines: Baselines) -> dict[str, Any]:
    """``profile_meta.json`` ``baseline_check``: the baselines and, for the bundle and each baseline, the median and
    P90 |error| over the test shapes (``verdict.py`` compares them)."""
    stats = {}
    for who, col in (("bundle", "error_pct"), ("constant", "constant_error_pct"), ("linear", "linear_error_pct")):
        med, p90 = abs_error_stats(table[col].to_numpy(dtype=float))
        stats[who] = {"median_abs_error_pct": med, "p90_abs_error_pct": p90}
    return {"num_shapes": len(table), "fitted_on": "fit", **baselines.to_dict(), "errors": stats}
