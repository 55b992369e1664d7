"""The host's share of the native engine's steps, measured on the steps the profiler times (``StepTimer``).

The engine pipelines its steps one deep (``engine/engine.py``): while the device runs step n, the host packs step n+1,
and launches it once n has ended. A step's wall time (from the step before's end to its own) is then the device's
time for it plus what the host adds: the hand-over from one step to the next, and, when the engine packs the step at
its start instead of ahead (its batch admits a request that arrived during the step before, or the engine was idle),
the scheduling and packing as well (~0.35 ms on the H200, against ~40 us of hand-over:
``studies/2026-12-03-first-chunk/``). Vidur's operators hold only device work, so the ``head`` variant adds this
share as measured here (``step_correction.HostTerm``).

:class:`StepProbe` wraps the engine's runner while the shapes are timed, without touching the engine's source: per
launched step, in launch order, the device's time from the launch to the step's last op (CUDA events; on the CPU,
where a launch runs the step, the launch's own time) and whether the step was packed with nothing in flight (at its
start) or while the step before it ran (ahead). The events are read only once the engine is idle
(:meth:`StepProbe.records`), off the steps' critical path, but they still slow the steps they time: +14 to +19 us of
wall a step on the H200's host grid, +26 to +64 in a run-like stream, and with them on the hand-over drifts between
~35 and ~100 us (``studies/2026-12-03-build-grid/``). So the profiler times the walls with the events off
(:meth:`StepProbe.untimed`: the launch alone, the packing still recorded) and the device times in rounds of their
own, and takes the host's share as the one less the other (on the CPU, whose launch clock slows nothing, each step's
wall less its own launch's time).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, NamedTuple, Optional

from gpu_simulate_test.backends.conditions import measured_run


class LaunchRecord(NamedTuple):
    device_ns: Optional[int]  # the launch to the step's last op; None: launched untimed
    at_start: bool  # packed with nothing in flight: at the step's start, not ahead


class StepProbe:
    """Records every step the engine launches while installed (``with StepProbe(engine) as probe``)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.runner = engine.runner
        self._done: list[LaunchRecord] = []
        self._timed: list[tuple[bool, Any]] = []  # waited for, not yet read: (how it was packed, its timing)
        self._free: list[tuple[Any, Any]] = []  # CUDA event pairs read and free again
        self._cuda = self.runner.device.type == "cuda"
        self._at_start = False  # how the step packed last was packed
        self._launched: Optional[tuple[bool, Any]] = None  # the step in flight: how it was packed, its timing
        self.timing = True  # False: steps launch without events (:meth:`untimed`)

    @property
    def times_apart(self) -> bool:
        """Whether device times need steps of their own: CUDA events slow the steps they time (within
        :meth:`untimed` they are off); the CPU's launch clock slows nothing and stays on."""
        return self._cuda

    def records(self) -> list[LaunchRecord]:
        """Every step launched and waited for so far, in launch order. Call it while the engine is idle (after the
        driver's ``wait_all``): it reads the steps' CUDA events, which must all have been reached."""
        for at_start, timing in self._timed:
            if isinstance(timing, tuple):
                start, end = timing
                end.synchronize()  # recorded right behind the step's own end event: already reached
                self._done.append(LaunchRecord(int(round(start.elapsed_time(end) * 1e6)), at_start))
                self._free.append(timing)
            else:
                self._done.append(LaunchRecord(None if timing is None else int(timing), at_start))
        self._timed.clear()
        return self._done

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """Within the block, steps launch on CUDA as they would without the probe (their records hold no device
        time): the walls a run has. On the CPU the launch's own clock stays on: it slows nothing."""
        self.timing = False
        try:
            yield
        finally:
            self.timing = True

    def _events(self) -> tuple[Any, Any]:
        if self._free:
            return self._free.pop()
        import torch

        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def __enter__(self) -> "StepProbe":
        runner, prepare, launch, wait = self.runner, self.runner.prepare, self.runner.launch, self.runner.wait

        def probed_prepare(*args: Any, **kwargs: Any) -> Any:
            self._at_start = self.engine.in_flight is None
            return prepare(*args, **kwargs)

        def probed_launch(packed: Any) -> None:
            if self._cuda and not self.timing:
                launch(packed)
                self._launched = (self._at_start, None)
            elif self._cuda:
                events = self._events()
                events[0].record()
                launch(packed)
                events[1].record()
                self._launched = (self._at_start, events)
            else:
                t0 = time.perf_counter_ns()
                launch(packed)
                self._launched = (self._at_start, time.perf_counter_ns() - t0)

        def probed_wait() -> list[int]:
            tokens = wait()
            assert self._launched is not None, "the engine waited for a step it never launched"
            self._timed.append((bool(self._launched[0]), self._launched[1]))
            self._launched = None
            return tokens

        runner.prepare, runner.launch, runner.wait = probed_prepare, probed_launch, probed_wait
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        for name in ("prepare", "launch", "wait"):  # the class's own methods again
            self.runner.__dict__.pop(name, None)


@contextlib.contextmanager
def stepping(backend: Any, recorder: Any, probed: bool = True) -> Iterator[Optional[StepProbe]]:
    """``backend``'s engine loop started with ``recorder`` under real-bench's conditions (``measured_run``), as
    vidur-profile times its steps, with a :class:`StepProbe` on the native engine from its first step (``probed``);
    yields the probe (None when not ``probed``); time walls within its :meth:`~StepProbe.untimed` (:func:`untimed`),
    device times outside it. The loop stops when the block ends (after the caller waited for its
    requests), so that what runs on the engine next runs alone; the caller loads and closes the backend."""
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(StepProbe(backend.native_engine())) if probed else None
        stack.enter_context(measured_run())
        backend.start(recorder)
        try:
            yield probe
        finally:
            backend.stop()


def untimed(probe: Optional[StepProbe]) -> contextlib.AbstractContextManager[None]:
    """``probe.untimed()``, or nothing to switch off where no probe is installed."""
    return probe.untimed() if probe is not None else contextlib.nullcontext()
