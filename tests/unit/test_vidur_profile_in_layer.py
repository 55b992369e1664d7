"""The native engine's token ops timed in their layer (``engine_ops.InLayer``): the whole layer sequence against it
without the op. Ops of known cost on a fake clock (or sleeps) stand in for kernels, and an eager call stands in for a
graph's replay."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

from gpu_simulate_test.vidur_ext.profiler import timing
from gpu_simulate_test.vidur_ext.profiler.engine_ops import InLayer
from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_difference


class FakeClock:
    """``time.perf_counter_ns`` for ``timing``: ops advance it by their cost, so the timings are exact."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def op(self, ms: float) -> Callable[[int], None]:
        def run(i: int) -> None:
            self.ns += int(ms * 1e6)

        return run


def test_an_op_in_its_layer_costs_the_difference_it_makes_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[int] = []
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter_ns=clock))

    def capture(fns: list[Callable[[int], Any]], layers: int) -> Callable[[], None]:
        captured.append(len(fns))
        return lambda: [fn(i) for i in range(layers) for fn in fns]

    seq = InLayer([("a", clock.op(1.0)), (None, clock.op(0.5)), ("b", clock.op(3.0))], 2, capture)
    method = TimingMethod(warmup_iters=1, repeat_iters=3, calls_per_repeat=2)
    a = seq.op("a").measure(lambda: None, method)
    b = seq.op("b").measure(lambda: None, method)
    neighbour = seq.measure(None, lambda: None, method)
    # the whole sequence once, then each op's sequence without it
    assert captured == [3, 2, 2, 2]
    # per layer, in ms, every repeat
    assert a.tolist() == pytest.approx([1.0] * 3) and b.tolist() == pytest.approx([3.0] * 3)
    assert neighbour.tolist() == pytest.approx([0.5] * 3)
    with pytest.raises(KeyError, match="c is not one"):
        seq.op("c")


def test_time_difference_interleaves_the_two_and_syncs_once_a_repeat() -> None:
    calls: list[str] = []
    diff = time_difference(lambda: (calls.append("f"), time.sleep(0.002)), lambda: calls.append("b"),
                           lambda: calls.append("sync"), TimingMethod(warmup_iters=1, repeat_iters=2,
                                                                      calls_per_repeat=2))
    assert calls == ["f", "b", "sync"] + ["f", "f", "sync", "b", "b", "sync"] * 2
    assert diff.shape == (2,) and np.all(diff > 1.9), diff


def test_a_difference_below_zero_is_read_as_no_cost() -> None:
    """An op cheaper than the noise of the sequence around it can time faster than the sequence without it; its cost
    is then 0, never negative (the profile's tables refuse negative times: the H200 vllm build stopped there)."""
    diff = time_difference(lambda: None, lambda: time.sleep(0.002), lambda: None,
                           TimingMethod(warmup_iters=0, repeat_iters=3, calls_per_repeat=1))
    assert diff.shape == (3,) and np.all(diff == 0.0), diff
