"""Match real and simulated engine iterations by batch composition, and measure the step-time error.

Two iterations match when they process the same requests with the same token counts (the
``requests`` field, order ignored); the k-th occurrence of a composition in one run is paired
with the k-th in the other (consecutive decode steps of one batch look alike). Matched pairs
isolate the execution-time model's error (same batch, different time); the share of iterations
left unmatched measures how far the two schedulers diverged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.metrics import paired_abs_error_pct, signed_error_pct


@dataclass(frozen=True)
class IterationMatch:
    pairs: pd.DataFrame  # COMPARISON_ITERATION_PAIRS columns
    by_shape: pd.DataFrame  # COMPARISON_ITERATION_ERROR columns
    summary: dict[str, Any]


def _keyed(it: pd.DataFrame) -> pd.DataFrame:
    """The iteration frame with a canonical composition key and its occurrence number."""
    comp = [";".join(sorted(s.split(";"))) for s in it["requests"].astype(str).tolist()]
    out = pd.DataFrame(
        {
            "iteration_id": it["iteration_id"].to_numpy(np.int64),
            "key": comp,
            "batch_size": it["batch_size"].to_numpy(np.int64),
            "num_prefill_tokens": it["num_prefill_tokens"].to_numpy(np.int64),
            "num_decode_tokens": it["num_decode_tokens"].to_numpy(np.int64),
            "step_ns": (it["end_time_ns"] - it["start_time_ns"]).to_numpy(np.int64),
        }
    )
    out["occurrence"] = out.groupby("key", sort=False).cumcount()
    return out


def _bin_edges(edges: list[int]) -> np.ndarray:
    e = np.asarray(sorted(set(int(x) for x in edges)), dtype=np.int64)
    if len(e) == 0 or e[0] != 0:
        e = np.concatenate(([0], e[e > 0]))
    return e


def match_iterations(real: pd.DataFrame, sim: pd.DataFrame, prefill_bin_edges: list[int]) -> IterationMatch:
    """Pair iterations (see the module docstring) and group their step-time error by batch shape."""
    r, s = _keyed(real), _keyed(sim)
    m = r.merge(s[["key", "occurrence", "iteration_id", "step_ns"]], on=["key", "occurrence"], suffixes=("_real", "_sim"))
    m = m.sort_values("iteration_id_real", kind="stable")
    pairs = pd.DataFrame(
        {
            "real_iteration_id": m["iteration_id_real"].to_numpy(np.int64),
            "sim_iteration_id": m["iteration_id_sim"].to_numpy(np.int64),
            "batch_size": m["batch_size"].to_numpy(np.int64),
            "num_prefill_tokens": m["num_prefill_tokens"].to_numpy(np.int64),
            "num_decode_tokens": m["num_decode_tokens"].to_numpy(np.int64),
            "real_step_ns": m["step_ns_real"].to_numpy(np.int64),
            "sim_step_ns": m["step_ns_sim"].to_numpy(np.int64),
        }
    )
    return IterationMatch(pairs, _by_shape(pairs, _bin_edges(prefill_bin_edges)), _summary(r, s, pairs))


def _by_shape(pairs: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    b = np.searchsorted(edges, pairs["num_prefill_tokens"].to_numpy(), side="right") - 1
    hi = np.append(edges[1:], -1)[b]
    real = pairs["real_step_ns"].to_numpy(np.float64)
    sim = pairs["sim_step_ns"].to_numpy(np.float64)
    rel = np.where(real > 0, 100.0 * np.abs(sim - real) / np.where(real > 0, real, 1.0), np.nan)
    df = pairs.assign(prefill_lo=edges[b], prefill_hi=hi, rel=rel)
    g = df.groupby(["batch_size", "num_decode_tokens", "prefill_lo", "prefill_hi"], sort=True)
    out = g.agg(
        n_matched=("real_step_ns", "size"),
        real_step_mean_ns=("real_step_ns", "mean"),
        sim_step_mean_ns=("sim_step_ns", "mean"),
        paired_abs_err_p50_pct=("rel", "median"),
    ).reset_index()
    out["error_pct"] = signed_error_pct(out["real_step_mean_ns"].to_numpy(), out["sim_step_mean_ns"].to_numpy())
    out["prefill_hi"] = pd.array(out["prefill_hi"].where(out["prefill_hi"] >= 0), dtype="Int64")
    return out[
        ["batch_size", "num_decode_tokens", "prefill_lo", "prefill_hi", "n_matched", "real_step_mean_ns",
         "sim_step_mean_ns", "error_pct", "paired_abs_err_p50_pct"]
    ]


def _opt(x: float) -> Optional[float]:
    return None if x is None or not np.isfinite(x) else float(x)


def _summary(r: pd.DataFrame, s: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, Any]:
    real_step = pairs["real_step_ns"].to_numpy(np.float64)
    sim_step = pairs["sim_step_ns"].to_numpy(np.float64)
    p50, p90 = paired_abs_error_pct(real_step, sim_step)
    matched_time_err = float(signed_error_pct(real_step.sum(), sim_step.sum())) if len(pairs) else float("nan")
    busy_err = float(signed_error_pct(float(r["step_ns"].sum()), float(s["step_ns"].sum())))
    return {
        "real_iterations": len(r),
        "sim_iterations": len(s),
        "matched": len(pairs),
        "matched_fraction_of_real": len(pairs) / len(r) if len(r) else 0.0,
        "matched_fraction_of_sim": len(pairs) / len(s) if len(s) else 0.0,
        "matched_step_time_error_pct": _opt(matched_time_err),
        "matched_paired_abs_err_p50_pct": p50,
        "matched_paired_abs_err_p90_pct": p90,
        "busy_time_real_ns": int(r["step_ns"].sum()),
        "busy_time_sim_ns": int(s["step_ns"].sum()),
        "busy_time_error_pct": _opt(busy_err),
    }
