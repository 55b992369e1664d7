"""Pipelined wall-time measurement: the engines are host-bound at small batches, so the time that counts
is what the host spends issuing the work plus whatever the device adds, not kernel time alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpu_simulate_test.io.schemas import PROFILE_STATS


@dataclass(frozen=True)
class TimingMethod:
    warmup_iters: int
    repeat_iters: int
    calls_per_repeat: int

    def describe(self) -> str:
        return (
            f"pipelined wall time: {self.warmup_iters} warm-up calls, then {self.repeat_iters} repeats of "
            f"{self.calls_per_repeat} back-to-back calls with one device sync per repeat; per-call time = repeat / calls"
        )


def _calls_ns(fn: Callable[[], Any], sync: Callable[[], None], calls: int) -> int:
    """Wall ns of ``calls`` back-to-back calls and one device sync."""
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    sync()
    return time.perf_counter_ns() - t0


def time_call(fn: Callable[[], Any], sync: Callable[[], None], method: TimingMethod) -> np.ndarray:
    """Per-call wall times in ms, one per repeat."""
    for _ in range(method.warmup_iters):
        fn()
    sync()
    return np.array([_calls_ns(fn, sync, method.calls_per_repeat) for _ in range(method.repeat_iters)],
                    dtype=float) / method.calls_per_repeat / 1e6


def time_difference(fn: Callable[[], Any], base: Callable[[], Any], sync: Callable[[], None],
                    method: TimingMethod) -> np.ndarray:
    """Per-call wall time of ``fn`` over ``base`` in ms, one per repeat: each repeat times ``calls_per_repeat``
    calls of each, back to back, so that both see the same state of the host and the device. A repeat where ``fn``
    ran faster than ``base`` gives 0, not a negative cost: the op is within the noise of the sequence around it (on the
    H200 the input norm, a few us under 28 whole layers, read -0.0002 ms once in a grid that reached 4,096 tokens)."""
    for _ in range(method.warmup_iters):
        fn()
        base()
    sync()
    calls = method.calls_per_repeat
    diff = np.array([_calls_ns(fn, sync, calls) - _calls_ns(base, sync, calls) for _ in range(method.repeat_iters)],
                    dtype=float) / calls / 1e6
    return np.maximum(diff, 0.0)


def stats_ms(samples: np.ndarray) -> dict[str, float]:
    """Vidur's ``time_stats.<op>.<stat>`` values (it fits on the median)."""
    fns = {"median": np.median, "mean": np.mean, "std": np.std, "min": np.min, "max": np.max}
    return {s: float(fns[s](samples)) for s in PROFILE_STATS}


TRIM = 0.1  # share of samples dropped at each end by trimmed_mean


def trimmed_mean(samples: np.ndarray, cut: float = TRIM) -> float:
    """Mean of the samples left after dropping ``floor(cut * n)`` at each end.

    The whole-iteration target: Vidur's sums of step times (TPOT, E2E) follow the mean, and a host whose step time
    has two modes (the H100 host's hf-generate decode: ~24 and ~45 ms) moves the median from one mode to the other;
    the trim still drops the rare outlier (a CUDA-graph capture, a stall).
    """
    ordered = np.sort(np.asarray(samples, dtype=float))
    k = int(cut * len(ordered))
    return float(ordered[k:len(ordered) - k].mean())
