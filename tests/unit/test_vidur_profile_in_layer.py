"""The native engine's token ops timed in their layer (``engine_ops.InLayer``): the whole layer sequence against it
without the op. Sleeps of known length stand in for kernels, and an eager call stands in for a graph's replay."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pytest

from gpu_simulate_test.vidur_ext.profiler.engine_ops import InLayer
from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_difference


def _sleep(ms: float) -> Callable[[int], None]:
    return lambda i: time.sleep(ms / 1e3)


def test_an_op_in_its_layer_costs_the_difference_it_makes_per_layer() -> None:
    captured: list[int] = []

    def capture(fns: list[Callable[[int], Any]], layers: int) -> Callable[[], None]:
        captured.append(len(fns))
        return lambda: [fn(i) for i in range(layers) for fn in fns]

    seq = InLayer([("a", _sleep(1.0)), (None, _sleep(0.5)), ("b", _sleep(3.0))], 2, capture)
    method = TimingMethod(warmup_iters=1, repeat_iters=3, calls_per_repeat=2)
    a = np.median(seq.op("a").measure(lambda: None, method))
    b = np.median(seq.op("b").measure(lambda: None, method))
    neighbour = np.median(seq.measure(None, lambda: None, method))
    # the whole sequence once, then each op's sequence without it
    assert captured == [3, 2, 2, 2]
    # per layer, in ms (a sleep overshoots a little, more on a busy machine)
    assert 0.9 < a < 1.8 and 2.9 < b < 4.0 and 0.4 < neighbour < 1.3, (a, b, neighbour)
    with pytest.raises(KeyError, match="c is not one"):
        seq.op("c")


def test_time_difference_interleaves_the_two_and_syncs_once_a_repeat() -> None:
    calls: list[str] = []
    diff = time_difference(lambda: (calls.append("f"), time.sleep(0.002)), lambda: calls.append("b"),
                           lambda: calls.append("sync"), TimingMethod(warmup_iters=1, repeat_iters=2,
                                                                      calls_per_repeat=2))
    assert calls == ["f", "b", "sync"] + ["f", "f", "sync", "b", "b", "sync"] * 2
    assert diff.shape == (2,) and np.all(diff > 1.9), diff
