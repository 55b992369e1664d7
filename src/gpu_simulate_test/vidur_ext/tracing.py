"""Record what Vidur simulates, token by token and batch by batch, through its own callbacks.

Vidur 0.0.26 keeps per-request metrics only. Here:

- :class:`TracedRequest` hooks ``Request.on_batch_end`` (called by Vidur's ``Batch.on_batch_end`` at each
  batch-end event) and records the event time whenever the call produced an output token: the batch that
  completes the prefill (Vidur counts the first decode token there) and every decode batch after it.
  It also completes ``Request.restart`` (preemption), which leaves the per-stage prefill state behind and
  mangles requests preempted mid-prefill.
- :class:`TracingTraceReplayGenerator` is Vidur's trace-replay generator making TracedRequests that carry
  the workload's request id.
- :class:`IterationRecorder` is Vidur's metrics store that also keeps one row per batch.
- :class:`TracingSimulator` is Vidur's simulator using that store and keeping its requests; it restarts
  Vidur's class-level id counters, so several simulations can run in one process.

The two batch-end hooks run once per batch and once per request in a batch: millions of times when a scheduler
runs one request at a time. They append to flat arrays (no Python object per token or per batch) and read Vidur
0.0.26's own fields rather than its properties (one Python call each); the per-batch strings are built after
the run. ``benchmarks/bench_vidur_hooks.py`` measures what they add over stock Vidur.
"""

from __future__ import annotations

from array import array
from typing import Callable, List, Optional

import numpy as np

from vidur.config import SimulationConfig
from vidur.config.utils import get_all_subclasses
from vidur.entities.base_entity import BaseEntity
from vidur.entities import Batch, Request
from vidur.events import BaseEvent, RequestArrivalEvent
from vidur.metrics import MetricsStore
from vidur.request_generator.trace_replay_request_generator import TraceReplayRequestGenerator
from vidur.simulator import Simulator
from vidur.types import ReplicaId

REQUEST_ID_COLUMN = "RequestId"  # extra trace column (Vidur ignores it): the workload's request id


class TracedRequest(Request):
    """Vidur's request, recording the time each output token completes (Vidur's own batch-end time)."""

    def __init__(self, arrived_at: float, num_prefill_tokens: int, num_decode_tokens: int, workload_id: int) -> None:
        super().__init__(arrived_at=arrived_at, num_prefill_tokens=num_prefill_tokens, num_decode_tokens=num_decode_tokens)
        self.workload_id = workload_id
        self.requested_decode_tokens = num_decode_tokens  # restart() rewrites Vidur's own counts
        self.token_times_s = array("d")
        self.on_completed: Optional[Callable[[int], None]] = None  # told once, when the request completes

    def on_batch_end(self, time: float, num_tokens_processed: int) -> None:
        super().on_batch_end(time, num_tokens_processed)
        # A batch yields a token once the (re-)prefill is complete: the prefill's last chunk, then each decode.
        if self._is_prefill_complete:
            self.token_times_s.append(time)
            if self._completed and self.on_completed is not None:
                self.on_completed(1)

    def restart(self) -> None:
        """Complete Vidur's preemption-by-recompute from outside, in two ways:

        - Vidur keeps the per-stage counters of the first attempt, which then exceed the request's size
          during the re-prefill and trip its assertion: reset them with the rest.
        - Vidur makes every processed token part of the new prompt and the rest "decode" tokens; for a request
          preempted in the middle of a chunked prefill that turns the unprocessed prompt into decode steps that
          each emit a token. Such a request simply starts its prefill over.
        """
        prefill_was_complete = self.is_prefill_complete
        sizes = (self._num_prefill_tokens, self._num_decode_tokens)
        super().restart()
        if not prefill_was_complete:
            self._num_prefill_tokens, self._num_decode_tokens = sizes
        self._num_stage_processed_tokens = 0
        self._is_prefill_stage_complete = False


class TracingTraceReplayGenerator(TraceReplayRequestGenerator):
    """Vidur's trace reader (same file format, scaling and clipping), producing :class:`TracedRequest`."""

    def generate_requests(self) -> List[Request]:
        df = self.trace_df
        ids = df[REQUEST_ID_COLUMN].tolist() if REQUEST_ID_COLUMN in df.columns else list(range(len(df)))
        return [
            TracedRequest(float(t), int(p), int(d), int(rid))
            for rid, t, p, d in zip(ids, df["Time"].tolist(), df["PromptTokenCount"].tolist(), df["CompletionTokenCount"].tolist())
        ]


class IterationRecorder(MetricsStore):
    """Vidur's metrics store plus one record per batch: its times, sizes and per-request token counts."""

    def __init__(self, config: SimulationConfig) -> None:
        super().__init__(config)
        self.start_s = array("d")
        self.end_s = array("d")
        self.num_prefill_tokens = array("q")
        self.batch_size = array("q")
        self.member_requests: List[Request] = []  # every batch's requests, one after the other
        self.member_tokens = array("q")  # and the tokens each was given in it

    def on_batch_end(self, time: float, batch: Batch, replica_id: ReplicaId, memory_usage_percent: int) -> None:
        requests = batch._requests  # Vidur 0.0.26's fields, set when the batch was formed (see the module docstring)
        self.start_s.append(batch._scheduled_at)
        self.end_s.append(time)
        self.num_prefill_tokens.append(batch._num_prefill_tokens)
        self.batch_size.append(len(requests))
        self.member_requests.extend(requests)
        self.member_tokens.extend(batch._num_q_tokens)
        super().on_batch_end(time, batch, replica_id, memory_usage_percent)

    @property
    def num_batches(self) -> int:
        return len(self.end_s)

    def num_decode_tokens(self) -> np.ndarray:
        """Decode tokens of each batch: its tokens minus its prefill tokens."""
        sizes = np.frombuffer(self.batch_size, dtype=np.int64)
        tokens = np.frombuffer(self.member_tokens, dtype=np.int64)
        per_batch = np.add.reduceat(tokens, np.cumsum(sizes) - sizes) if len(sizes) else np.zeros(0, dtype=np.int64)
        return per_batch - np.frombuffer(self.num_prefill_tokens, dtype=np.int64)

    def members(self) -> List[str]:
        """``r<id>:<tokens>;...`` of each batch, in Vidur's order within the batch."""
        parts = [f"r{_workload_id(r)}:{q}" for r, q in zip(self.member_requests, self.member_tokens)]
        if len(parts) == len(self.end_s):  # one request per batch
            return parts
        out, at = [], 0
        for n in self.batch_size:
            out.append(";".join(parts[at:at + n]))
            at += n
        return out


def reset_entity_ids() -> None:
    """Vidur numbers replicas, requests, batches and events with class-level counters and assumes one
    simulation per process: a second Cluster's replica would be id 1 while the global scheduler routes to 0.
    Restart every counter so that each simulation in a process numbers (and orders ties) the same way."""
    for cls in (BaseEntity, *get_all_subclasses(BaseEntity)):
        cls._id = -1
    BaseEvent._id = 0


def _workload_id(request: Request) -> int:
    return getattr(request, "workload_id", request.id)


class TracingSimulator(Simulator):
    """Vidur's simulator with :class:`IterationRecorder` as its metrics store; keeps the generated requests."""

    requests: List[Request]

    def __init__(self, config: SimulationConfig, on_completed: Optional[Callable[[int], None]] = None) -> None:
        reset_entity_ids()
        self._on_completed = on_completed
        super().__init__(config)
        self._metric_store = IterationRecorder(config)

    @property
    def recorder(self) -> IterationRecorder:
        return self._metric_store  # type: ignore[return-value]

    def _init_event_queue(self) -> None:
        self.requests = self._request_generator.generate()
        for request in self.requests:
            if isinstance(request, TracedRequest):
                request.on_completed = self._on_completed
            self._add_event(RequestArrivalEvent(request.arrived_at, request))
