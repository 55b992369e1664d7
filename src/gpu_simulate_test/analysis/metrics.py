"""Latency metrics per request (vLLM ``bench serve`` definitions) and the statistics that compare them.

Every metric is computed from token times only, identically for the real and the simulated run,
over the token series that :mod:`.align` paired (so early stop is already accounted for). TTFT, TPOT
and E2E need only each request's first and last token and its token count; ITL needs every token's
time, so it pairs only the requests that have them, and is left out (and said so) when none does.
Values are float64 nanoseconds; NaN marks "undefined" (TPOT of a one-token output), which is
counted, never averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from gpu_simulate_test.analysis.align import PairedRuns, TokenSeries


def _first(ts: TokenSeries) -> np.ndarray:
    return ts.times_ns[ts.offsets[:-1]]


def _last(ts: TokenSeries) -> np.ndarray:
    return ts.times_ns[ts.offsets[1:] - 1]


def ttft(ts: TokenSeries) -> np.ndarray:
    """Time to first token: first token - scheduled arrival."""
    return (_first(ts) - ts.arrival_ns).astype(np.float64)


def e2e(ts: TokenSeries) -> np.ndarray:
    """End to end: last token - scheduled arrival."""
    return (_last(ts) - ts.arrival_ns).astype(np.float64)


def tpot(ts: TokenSeries) -> np.ndarray:
    """Time per output token after the first: (last - first) / (n - 1); NaN for one-token outputs."""
    n = ts.tokens
    span = (_last(ts) - _first(ts)).astype(np.float64)
    return np.where(n > 1, span / np.maximum(n - 1, 1), np.nan)


def e2e_per_token(ts: TokenSeries) -> np.ndarray:
    """Normalized E2E: E2E / number of output tokens (Vidur's ``request_e2e_time_normalized``)."""
    return e2e(ts) / ts.tokens


def itl(ts: TokenSeries) -> np.ndarray:
    """Inter-token latencies, pooled: the gaps between consecutive tokens of the requests whose every token time is
    known in both runs (so real and simulated gaps pair up one to one)."""
    gaps = np.diff(ts.times_ns).astype(np.float64)
    keep = np.ones(len(gaps), dtype=bool)
    keep[ts.offsets[1:-1] - 1] = False  # the gap from one request's last token to the next one's first
    if len(gaps):
        keep &= np.repeat(ts.complete, ts.counts)[:-1]  # a gap belongs to the request of its first token
    return gaps[keep]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    per: str  # what one value is: a request or a token gap
    values: Callable[[TokenSeries], np.ndarray]
    needs_token_times: bool = False  # needs every token's time, not only the first and last


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("ttft", "TTFT", "ns", "request", ttft),
        Metric("tpot", "TPOT", "ns", "request", tpot),
        Metric("itl", "ITL", "ns", "token gap", itl, needs_token_times=True),
        Metric("e2e", "E2E", "ns", "request", e2e),
        Metric("e2e_per_token", "E2E per output token", "ns/token", "request", e2e_per_token),
    )
}
HEADLINE = ("ttft", "tpot", "e2e")


@dataclass(frozen=True)
class MetricValues:
    """Paired values of one metric: ``real[i]`` and ``sim[i]`` describe the same request (or gap)."""

    metric: Metric
    real: np.ndarray
    sim: np.ndarray
    excluded: int  # pairs where the metric is undefined (TPOT of one-token outputs)


def unavailable_metrics(pair: PairedRuns) -> dict[str, str]:
    """Metrics that cannot be compared, with why: those needing every token's time when no compared request has
    them in both runs (a run imported without per-token times, e.g. per-request results only)."""
    if pair.real_tokens.complete.any() or not (pair.partial_real or pair.partial_sim):
        return {}
    who = " and ".join(w for w, n in (("real", pair.partial_real), ("simulated", pair.partial_sim)) if n)
    why = f"no compared request has every token's time in both runs (the {who} run has only some token times)"
    return {name: why for name, m in METRICS.items() if m.needs_token_times}


def metric_values(pair: PairedRuns) -> dict[str, MetricValues]:
    """Every metric the runs allow (see :func:`unavailable_metrics`), paired."""
    out = {}
    skip = unavailable_metrics(pair)
    for name, m in METRICS.items():
        if name in skip:
            continue
        r, s = m.values(pair.real_tokens), m.values(pair.sim_tokens)
        ok = ~(np.isnan(r) | np.isnan(s))
        out[name] = MetricValues(m, r[ok], s[ok], int((~ok).sum()))
    return out


def statistic_names(percentiles: list[float]) -> list[str]:
    return ["mean", *(f"p{p:g}" for p in percentiles)]


def summary_statistics(values: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """mean followed by the percentiles (linear interpolation); NaN for an empty sample."""
    if len(values) == 0:
        return np.full(1 + len(percentiles), np.nan)
    return np.concatenate(([values.mean()], np.percentile(values, percentiles)))


def signed_error_pct(real: np.ndarray | float, sim: np.ndarray | float) -> np.ndarray:
    """100 (sim - real) / real; NaN where real is 0 (no relative error is defined)."""
    real = np.asarray(real, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(real != 0, 100.0 * (np.asarray(sim) - real) / real, np.nan)


def _ecdf(sorted_values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Right-continuous ECDF of ``sorted_values`` evaluated at ``at``."""
    return np.searchsorted(sorted_values, at, side="right") / len(sorted_values)


def ks_statistic(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two ECDFs.

    The gap of two step functions peaks at a sample point, so both ECDFs are evaluated at every
    sample point (sorted queries: no merged support to build).
    """
    gap_a = np.abs(_ecdf(a_sorted, a_sorted) - _ecdf(b_sorted, a_sorted)).max()
    gap_b = np.abs(_ecdf(a_sorted, b_sorted) - _ecdf(b_sorted, b_sorted)).max()
    return float(max(gap_a, gap_b))


def wasserstein(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """Wasserstein-1 distance, the area between the ECDFs (same units as the values).

    For equal sample sizes (always the case for paired metrics) it is the mean gap between the sorted
    samples, which is exact and avoids building the merged support.
    """
    if len(a_sorted) == len(b_sorted):
        return float(np.abs(a_sorted - b_sorted).mean())
    support = np.sort(np.concatenate((a_sorted, b_sorted)))
    gap = _ecdf(a_sorted, support[:-1]) - _ecdf(b_sorted, support[:-1])
    return float(np.sum(np.abs(gap) * np.diff(support)))


def paired_abs_error_pct(real: np.ndarray, sim: np.ndarray, q: tuple[float, float] = (50.0, 90.0)) -> tuple[Optional[float], Optional[float]]:
    """Median and P90 of 100 |sim - real| / real over the pairs whose real value is positive."""
    ok = real > 0
    if not ok.any():
        return None, None
    rel = 100.0 * np.abs(sim[ok] - real[ok]) / real[ok]
    p50, p90 = np.percentile(rel, q)
    return float(p50), float(p90)
