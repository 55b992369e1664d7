"""Arrival processes (a registry keyed by name): integer ns from the workload's start, non-decreasing.

The first request arrives at 0; later ones follow the process's inter-arrival gaps, so the
workload's duration is the last arrival time. With ``arrival.phases`` the rate-driven processes run
phase after phase, each at its own rate for its own duration.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from gpu_simulate_test.config.workload import ArrivalConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.units import NS_PER_S

# (n, config, rng, the trace's own timestamps in ns or None) -> arrival times in ns
ArrivalProcess = Callable[[int, ArrivalConfig, np.random.Generator, Optional[np.ndarray]], np.ndarray]


def _need_qps(cfg: ArrivalConfig) -> float:
    if not cfg.qps > 0:
        raise InputError(f"workload.arrival.qps={cfg.qps} must be > 0 for process {cfg.process!r}")
    return float(cfg.qps)


def _from_gaps(gaps_s: np.ndarray) -> np.ndarray:
    """Cumulative sum of gaps (seconds) after a first arrival at 0, rounded once to ns (so never decreasing)."""
    times = np.concatenate(([0.0], np.cumsum(gaps_s[1:]))) if len(gaps_s) else np.zeros(0)
    return np.rint(times * NS_PER_S).astype(np.int64)


# Inter-arrival gaps (seconds) of the rate-driven processes: (n, rate, config, rng) -> n gaps of mean 1/rate.
Gaps = Callable[[int, float, ArrivalConfig, np.random.Generator], np.ndarray]


def _poisson_gaps(n: int, qps: float, cfg: ArrivalConfig, rng: np.random.Generator) -> np.ndarray:
    return rng.exponential(1.0 / qps, size=n)


def _gamma_gaps(n: int, qps: float, cfg: ArrivalConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma gaps with mean 1/qps and coefficient of variation ``cv`` (cv=1 is Poisson, >1 is bursty)."""
    if not cfg.cv > 0:
        raise InputError(f"workload.arrival.cv={cfg.cv} must be > 0 (1 = Poisson, larger = burstier)")
    shape = 1.0 / cfg.cv**2
    return rng.gamma(shape, 1.0 / (qps * shape), size=n)


def _constant_gaps(n: int, qps: float, cfg: ArrivalConfig, rng: np.random.Generator) -> np.ndarray:
    return np.full(n, 1.0 / qps)


RATE_GAPS: dict[str, Gaps] = {"poisson": _poisson_gaps, "gamma": _gamma_gaps, "constant": _constant_gaps}


def _poisson(n: int, cfg: ArrivalConfig, rng: np.random.Generator, ts: Optional[np.ndarray]) -> np.ndarray:
    return _from_gaps(_poisson_gaps(n, _need_qps(cfg), cfg, rng))


def _gamma(n: int, cfg: ArrivalConfig, rng: np.random.Generator, ts: Optional[np.ndarray]) -> np.ndarray:
    return _from_gaps(_gamma_gaps(n, _need_qps(cfg), cfg, rng))


def _constant(n: int, cfg: ArrivalConfig, rng: np.random.Generator, ts: Optional[np.ndarray]) -> np.ndarray:
    return _from_gaps(_constant_gaps(n, _need_qps(cfg), cfg, rng))


def _all_at_once(n: int, cfg: ArrivalConfig, rng: np.random.Generator, ts: Optional[np.ndarray]) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


def _trace(n: int, cfg: ArrivalConfig, rng: np.random.Generator, ts: Optional[np.ndarray]) -> np.ndarray:
    """The trace's own timestamps, relative to its first selected request, times ``time_scale``."""
    if ts is None:
        raise InputError(
            "workload.arrival.process=trace needs a trace with timestamps (azure, mooncake, burstgpt, vidur_trace); "
            "this length source has none: choose poisson, gamma, constant or all_at_once"
        )
    if not cfg.time_scale > 0:
        raise InputError(f"workload.arrival.time_scale={cfg.time_scale} must be > 0 (2 = twice as slow)")
    rel = (ts - ts[0]).astype(np.float64) if len(ts) else np.zeros(0)
    return np.rint(rel * cfg.time_scale).astype(np.int64)


ARRIVAL_PROCESSES: dict[str, ArrivalProcess] = {
    "poisson": _poisson,
    "gamma": _gamma,
    "constant": _constant,
    "all_at_once": _all_at_once,
    "trace": _trace,
}


def phase_counts(cfg: ArrivalConfig) -> list[int]:
    """Requests of each phase of ``cfg.phases``: round(qps x duration_s), at least one."""
    if cfg.phases and cfg.process not in RATE_GAPS:
        raise InputError(f"workload.arrival.phases need a rate-driven process ({', '.join(RATE_GAPS)}), "
                         f"not {cfg.process!r}")
    counts = []
    for i, p in enumerate(cfg.phases):
        if not (p.qps > 0 and p.duration_s > 0):
            raise InputError(f"workload.arrival.phases[{i}]: qps={p.qps}, duration_s={p.duration_s}; both must be > 0")
        counts.append(int(round(p.qps * p.duration_s)))
        if counts[-1] < 1:
            raise InputError(f"workload.arrival.phases[{i}]: {p.qps} requests/s for {p.duration_s} s is no request")
    return counts


def _phased(n: int, cfg: ArrivalConfig, rng: np.random.Generator) -> np.ndarray:
    """Each phase in turn: its requests' gaps drawn at its rate, then scaled so that they fill the phase exactly
    (the first arrives as the phase starts, none after it ends): for Poisson, arrivals given their count."""
    counts = phase_counts(cfg)
    if n != sum(counts):
        raise InputError(f"workload.arrival.phases hold {sum(counts)} requests but {n} are there to send; "
                         "an imported trace must have at least that many (or shorten the phases)")
    out, start = [], 0.0
    for p, count in zip(cfg.phases, counts):
        gaps = RATE_GAPS[cfg.process](count, float(p.qps), cfg, rng)
        within = np.concatenate(([0.0], np.cumsum(gaps)[:-1])) * (float(p.duration_s) / gaps.sum())
        out.append(np.rint((start + within) * NS_PER_S).astype(np.int64))
        start += float(p.duration_s)
    return np.concatenate(out)


def arrival_times(cfg: ArrivalConfig, n: int, rng: np.random.Generator, trace_ns: Optional[np.ndarray]) -> np.ndarray:
    """Arrival times (ns) of ``n`` requests under ``cfg.process`` (phase by phase with ``cfg.phases``)."""
    if cfg.process not in ARRIVAL_PROCESSES:
        raise InputError(f"workload.arrival.process={cfg.process!r} is unknown; choose one of {sorted(ARRIVAL_PROCESSES)}")
    if cfg.phases:
        return _phased(n, cfg, rng)
    return ARRIVAL_PROCESSES[cfg.process](n, cfg, rng, trace_ns)
