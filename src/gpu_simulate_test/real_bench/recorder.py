"""What the engine did during the measured run: dispatch times, per-token times, iterations.

Backends write into a :class:`Recorder` from their engine threads; the run turns it into the
validated tables of ``specs/run.md``. Only finished requests become rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pandas as pd

from gpu_simulate_test.io.runs import RequestRecord
from gpu_simulate_test.io.schemas import ITERATION_METRICS, format_requests_field
from gpu_simulate_test.real_bench.replay import RunClock
from gpu_simulate_test.workloads.load import WorkloadRequest


@dataclass(frozen=True)
class StepItem:
    """One request's share of an engine iteration."""

    request_id: int
    num_tokens: int
    is_prefill: bool


class Recorder:
    """Thread-safe sink for measurements; all times are run-relative ns on ``clock``."""

    def __init__(self, requests: list[WorkloadRequest], clock: RunClock) -> None:
        self.clock = clock
        self._requests = {r.request_id: r for r in requests}
        self._lock = threading.Lock()
        self._dispatch: dict[int, int] = {}
        self._tokens: dict[int, list[int]] = {}
        self._iterations: list[tuple[int, int, tuple[StepItem, ...]]] = []

    def dispatch(self, request_id: int, time_ns: int) -> None:
        """Record (or refine, with the engine's own stamp) when the request entered the engine's queue."""
        with self._lock:
            self._dispatch[request_id] = time_ns

    def finish(self, request_id: int, token_times_ns: list[int]) -> None:
        """A request ended normally with these per-token times."""
        with self._lock:
            self._tokens[request_id] = list(token_times_ns)

    def iteration(self, start_ns: int, end_ns: int, items: list[StepItem]) -> None:
        with self._lock:
            self._iterations.append((start_ns, end_ns, tuple(items)))

    @property
    def num_dispatched(self) -> int:
        return len(self._dispatch)

    @property
    def num_finished(self) -> int:
        return len(self._tokens)

    def dispatch_lateness_ns(self) -> list[int]:
        with self._lock:
            return [t - self._requests[rid].arrival_time_ns for rid, t in self._dispatch.items()]

    def records(self) -> list[RequestRecord]:
        """Finished requests as :class:`RequestRecord` (the input of ``tables_from_records``)."""
        with self._lock:
            out = []
            for rid, times in self._tokens.items():
                req = self._requests[rid]
                out.append(
                    RequestRecord(rid, req.arrival_time_ns, self._dispatch[rid], req.num_prefill_tokens, req.num_decode_tokens, times)
                )
            return out

    def iterations_frame(self) -> pd.DataFrame:
        """``iteration_metrics.csv`` rows in execution order."""
        with self._lock:
            its = sorted(self._iterations, key=lambda it: it[0])
        rows = []
        for i, (start, end, items) in enumerate(its):
            rows.append(
                {
                    "iteration_id": i,
                    "start_time_ns": start,
                    "end_time_ns": end,
                    "batch_size": len(items),
                    "num_prefill_tokens": sum(it.num_tokens for it in items if it.is_prefill),
                    "num_decode_tokens": sum(it.num_tokens for it in items if not it.is_prefill),
                    "requests": format_requests_field([(it.request_id, it.num_tokens) for it in items]),
                }
            )
        return pd.DataFrame(rows, columns=ITERATION_METRICS.column_names)
