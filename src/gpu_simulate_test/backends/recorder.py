"""What an engine did while it was watched: dispatch times, per-token times and its steps, on one clock.

Drivers write into a :class:`Recorder` from their engine threads. real-bench turns it into the validated tables of
``specs/run.md`` (only finished requests become rows); vidur-profile reads the steps back to time batch shapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from gpu_simulate_test.io.runs import RequestRecord
from gpu_simulate_test.io.schemas import ITERATION_METRICS, KV_TOKENS, format_requests_field
from gpu_simulate_test.workloads.load import WorkloadRequest


class RunClock:
    """One monotonic clock for the whole run: ``perf_counter_ns`` relative to the run's start."""

    def __init__(self) -> None:
        self.start_ns = time.perf_counter_ns()

    def now(self) -> int:
        return time.perf_counter_ns() - self.start_ns

    def rel(self, perf_counter_ns: int) -> int:
        """A raw ``perf_counter_ns`` reading, relative to the run's start."""
        return perf_counter_ns - self.start_ns

    def from_perf_counter(self, seconds: float) -> int:
        """An engine's ``time.perf_counter()`` float (the same clock, in seconds) as run-relative ns.

        A float64 of ~1e6 s has a resolution of ~0.1 ns, so rounding recovers the integer reading.
        """
        return round(seconds * 1e9) - self.start_ns


SPIN_NS = 300_000  # sleep until this close to the target, then spin (time.sleep overshoots by ~60-100 us)


def wait_until(clock: RunClock, target_ns: int, spin_ns: int = SPIN_NS) -> None:
    """Return at ``target_ns`` on ``clock`` (never earlier): sleep most of the way, spin the rest. real-bench hands
    each request over with it; vidur-profile times a step after an idle gap with it."""
    remaining = target_ns - clock.now()
    if remaining > spin_ns:
        time.sleep((remaining - spin_ns) / 1e9)
    while clock.now() < target_ns:
        pass


@dataclass(frozen=True)
class StepItem:
    """One request's share of an engine iteration; ``kv_tokens``: its KV-cache length after the iteration, where the
    engine tells it (native)."""

    request_id: int
    num_tokens: int
    is_prefill: bool
    kv_tokens: Optional[int] = None


@dataclass(frozen=True)
class Step:
    """One engine iteration: when it ran (run-relative ns) and who was in it."""

    start_ns: int
    end_ns: int
    items: tuple[StepItem, ...]


class Recorder:
    """Thread-safe sink for measurements; all times are run-relative ns on ``clock``."""

    def __init__(self, requests: list[WorkloadRequest], clock: RunClock) -> None:
        self.clock = clock
        self._requests = {r.request_id: r for r in requests}
        self._changed = threading.Condition()
        self._dispatch: dict[int, int] = {}
        self._tokens: dict[int, list[int]] = {}
        self._failed: dict[int, str] = {}
        self._steps: list[Step] = []

    def dispatch(self, request_id: int, time_ns: int) -> None:
        """Record (or refine, with the engine's own stamp) when the request entered the engine's queue."""
        with self._changed:
            self._dispatch[request_id] = time_ns

    def finish(self, request_id: int, token_times_ns: list[int]) -> None:
        """A request ended normally with these per-token times."""
        with self._changed:
            self._tokens[request_id] = list(token_times_ns)

    def fail(self, request_id: int, status: str) -> None:
        """A request the engine gave up on (a server's error, a cut stream): it stays out of the tables, and
        ``status`` (a short word, e.g. ``timeout``) is counted in the run's meta."""
        with self._changed:
            self._failed[request_id] = status

    def iteration(self, start_ns: int, end_ns: int, items: list[StepItem]) -> None:
        with self._changed:
            self._steps.append(Step(start_ns, end_ns, tuple(items)))
            self._changed.notify_all()

    @property
    def num_dispatched(self) -> int:
        return len(self._dispatch)

    @property
    def num_finished(self) -> int:
        return len(self._tokens)

    @property
    def num_failed(self) -> int:
        return len(self._failed)

    def failed_by_status(self) -> dict[str, int]:
        with self._changed:
            statuses = list(self._failed.values())
        return {s: statuses.count(s) for s in sorted(set(statuses))}

    @property
    def num_steps(self) -> int:
        return len(self._steps)

    def steps(self, since: int = 0) -> list[Step]:
        """The steps recorded so far, from the ``since``-th on, in the order the driver recorded them."""
        with self._changed:
            return self._steps[since:]

    def wait_for_step(self, match: Callable[[Step], bool], since: int, timeout_s: float) -> tuple[bool, int]:
        """Block until a step from the ``since``-th on matches, or ``timeout_s`` passed: ``(matched, checked)``,
        ``checked`` the index to go on from (every step before it was matched and failed).

        Each step is matched once, outside the lock: the engine's thread records a step under this lock and runs
        its next one under the same GIL, so a waiter that rescanned every step at every wake (hundreds of steps of
        a hundred requests, milliseconds of Python) stretched the very steps vidur-profile timed (its mixed shapes
        by ~3 ms on the H200, 2026-12-02)."""
        deadline = time.monotonic() + timeout_s
        checked = since
        while True:
            with self._changed:
                new = self._steps[checked:]
                if not new:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False, checked
                    self._changed.wait(left)
                    new = self._steps[checked:]
            for step in new:
                if match(step):
                    return True, checked
                checked += 1

    def dispatch_lateness_ns(self) -> list[int]:
        with self._changed:
            return [t - self._requests[rid].arrival_time_ns for rid, t in self._dispatch.items()]

    def records(self) -> list[RequestRecord]:
        """Finished requests as :class:`RequestRecord` (the input of ``tables_from_records``)."""
        with self._changed:
            out = []
            for rid, times in self._tokens.items():
                req = self._requests[rid]
                out.append(
                    RequestRecord(rid, req.arrival_time_ns, self._dispatch[rid], req.num_prefill_tokens, req.num_decode_tokens, times)
                )
            return out

    def iterations_frame(self) -> pd.DataFrame:
        """``iteration_metrics.csv`` rows in execution order; the optional ``kv_tokens`` column when every step
        carries its KV lengths."""
        with self._changed:
            steps = sorted(self._steps, key=lambda s: s.start_ns)
        with_kv = bool(steps) and all(it.kv_tokens is not None for s in steps for it in s.items)
        rows = []
        for i, s in enumerate(steps):
            row = {
                "iteration_id": i,
                "start_time_ns": s.start_ns,
                "end_time_ns": s.end_ns,
                "batch_size": len(s.items),
                "num_prefill_tokens": sum(it.num_tokens for it in s.items if it.is_prefill),
                "num_decode_tokens": sum(it.num_tokens for it in s.items if not it.is_prefill),
                "requests": format_requests_field([(it.request_id, it.num_tokens) for it in s.items]),
            }
            if with_kv:
                row[KV_TOKENS] = ";".join(str(it.kv_tokens) for it in s.items)
            rows.append(row)
        return pd.DataFrame(rows, columns=[c for c in ITERATION_METRICS.column_names if with_kv or c != KV_TOKENS])
