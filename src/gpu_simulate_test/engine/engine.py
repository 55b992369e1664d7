"""The step loop: schedule, run, sample, and the record of every iteration.

Iterations are pipelined one deep, with Vidur's timing of decisions kept: while the GPU runs iteration n, the host
applies n's bookkeeping (its tokens are placeholders until it ends), forms iteration n+1 as if no request arrived
before n ends, and packs its inputs. At n's end the requests that arrived meanwhile join the queue and the scheduler
revises n+1 (``Scheduler.revise``: they can only extend its admission, or, under ``vllm``, replace decodes formed
with an empty queue), and n+1 is launched (its inputs, n's tokens among them, were queued on the device behind n);
only then does ``step`` return n. So the GPU waits only for that hand-over, not for the host's scheduling, packing
and bookkeeping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional

import torch

from gpu_simulate_test.engine import kernels
from gpu_simulate_test.engine.config import POLICIES, EngineConfig
from gpu_simulate_test.engine.memory import MemoryPlan, kv_block_bytes, plan_kv_pool
from gpu_simulate_test.engine.model import Qwen3Model
from gpu_simulate_test.engine.runner import ModelRunner, PackedStep, TritonLoads
from gpu_simulate_test.engine.scheduler import Scheduler
from gpu_simulate_test.engine.sequence import ScheduledBatch, Sequence
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class StepEntry(NamedTuple):
    request_id: int
    num_tokens: int  # query tokens this iteration
    context_len: int  # KV tokens after the iteration (cached before + num_tokens)
    is_prefill: bool


@dataclass(frozen=True)
class StepOutput:
    """One iteration. ``start_ns`` / ``end_ns``: ``time.perf_counter_ns`` when its batch was decided (the end of
    the iteration before it, or the call that found nothing running) and when its sampled tokens were on the host.
    The per-entry views are built on access, so that building them never delays a step."""

    start_ns: int
    end_ns: int
    batch: ScheduledBatch
    sampled: list[int]  # one token per sampling entry, in entry order
    finished_seqs: list[Sequence]
    graph_shape: Optional[tuple[int, int]]  # the graph bucket that ran it; None: eager

    @property
    def cuda_graph(self) -> bool:
        return self.graph_shape is not None

    @property
    def entries(self) -> list[StepEntry]:
        return [StepEntry(e.seq.seq_id, e.num_q_tokens, e.start + e.num_q_tokens, e.is_prefill)
                for e in self.batch.entries]

    @property
    def new_tokens(self) -> list[tuple[int, int]]:
        """``(request_id, token_id)`` of every token this iteration generated."""
        return list(zip((e.seq.seq_id for e in self.batch.entries if e.samples), self.sampled))

    @property
    def finished(self) -> list[int]:
        return [s.seq_id for s in self.finished_seqs]


class LLMEngine:
    """The ``native`` engine: a transformers Qwen3 state dict in, greedy tokens out, one iteration per ``step``."""

    def __init__(self, config: EngineConfig, state_dict: Mapping[str, torch.Tensor]) -> None:
        device = _check_config(config)
        TritonLoads.install()
        self.config = config
        self.model = Qwen3Model.from_hf_state_dict(config.model, state_dict, _DTYPES[config.dtype], device)
        self.runner = ModelRunner(config, self.model)
        self.memory: Optional[MemoryPlan] = None
        num_blocks = config.num_blocks
        if num_blocks is None:
            self.memory = self._plan_memory()
            num_blocks = self.memory.blocks_that_fit
            if num_blocks < 1:
                raise InputError(f"no KV block fits in gpu_memory_utilization={config.gpu_memory_utilization} of "
                                 f"the device's memory ({self.memory.as_dict()}); raise it")
        self.scheduler = Scheduler(config, num_blocks)
        self.num_blocks = num_blocks
        self.runner.allocate_kv_cache(num_blocks)  # the ledger's pool, no slack (specs/engine.md)
        if self.runner.device.type == "cuda":  # compile and load every kernel variant, then capture
            self.runner.warmup()
            self.runner.capture_graphs()
        self._captures_at_startup = self.runner.num_captures
        self._loads_at_startup = TritonLoads.count
        self._active: set[int] = set()  # ids of the requests not finished yet
        self._arrivals: list[Sequence] = []  # added, not yet queued: they join at the next decision
        self._lock = threading.Lock()  # add_request may be called from another thread than step
        self._flight: Optional[_Flight] = None  # the iteration launched and not returned yet
        self.num_graph_steps = 0
        self.num_prefill_graph_steps = 0  # of those, steps with a prefill chunk (a mixed bucket, T > B)
        self.num_eager_steps = 0

    def _plan_memory(self) -> MemoryPlan:
        """vLLM's rule on the device: ``gpu_memory_utilization`` of its memory after the weights, a dry-run forward
        at ``max_batch_tokens`` and the CUDA graphs' pool."""
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated()  # the model, its RoPE table, the step buffers, the caller's tensors
        peak, graph_reserve = self.runner.profile_memory()
        free, total = torch.cuda.mem_get_info()
        non_torch = total - free - torch.cuda.memory_reserved()
        element_size = torch.finfo(_DTYPES[self.config.dtype]).bits // 8
        return plan_kv_pool(total=total, gpu_memory_utilization=self.config.gpu_memory_utilization,
                            resident=resident, peak_activations=peak, graph_reserve=graph_reserve,
                            non_torch=max(0, non_torch),
                            block_bytes=kv_block_bytes(self.config.model, self.config.block_size, element_size))

    def check_request(self, num_prompt_tokens: int, max_tokens: int) -> None:
        """Raise :class:`InputError` for a request the engine could never serve (check a workload before sending)."""
        self.scheduler.check_request(num_prompt_tokens, max_tokens)

    def add_request(self, request_id: int, prompt_token_ids: list[int], max_tokens: int,
                    arrival_time_ns: Optional[int] = None) -> None:
        """Queue a request; it generates exactly ``max_tokens`` tokens (no EOS). It joins the scheduler's queue at the
        next decision (the end of the iteration in flight), as a request arriving during an iteration does in Vidur.
        ``arrival_time_ns`` orders preempted sequences as Vidur does (by arrival); by default, now. Thread-safe."""
        self.scheduler.check_request(len(prompt_token_ids), max_tokens)
        vocab = self.config.model.vocab_size
        if prompt_token_ids and not (0 <= min(prompt_token_ids) and max(prompt_token_ids) < vocab):
            raise InputError(f"request {request_id} has token ids outside the vocabulary [0, {vocab})")
        seq = Sequence(seq_id=request_id, token_ids=list(prompt_token_ids), num_prompt_tokens=len(prompt_token_ids),
                       max_tokens=max_tokens,
                       arrival_time_ns=time.perf_counter_ns() if arrival_time_ns is None else arrival_time_ns)
        with self._lock:
            if request_id in self._active:
                raise InputError(f"request id {request_id} was added already")
            self._active.add(request_id)
            self._arrivals.append(seq)

    @property
    def in_flight(self) -> Optional[ScheduledBatch]:
        """The iteration launched and not returned by ``step`` yet (None: nothing runs)."""
        return None if self._flight is None else self._flight.batch

    def step(self, pipeline: bool = True) -> StepOutput:
        """Run until the next iteration ends and return it; the one after it is already running then (see the
        module's docstring). Call it only while ``has_unfinished()``. ``pipeline=False``: return with nothing in
        flight, the step's inputs still on the device (tools that then use the runner or its graphs directly)."""
        runner, scheduler = self.runner, self.scheduler
        if self._flight is None:  # nothing running: decide now
            start = time.perf_counter_ns()
            self._queue_arrivals()
            batch = scheduler.schedule()
            if batch is None:
                raise RuntimeError("step() with nothing to run: call it only while has_unfinished()")
            self._launch(batch, runner.prepare(batch), start)
        flight = self._flight
        # While the GPU runs it: apply it (placeholder tokens), then form and pack the next iteration.
        finished = scheduler.postprocess(flight.batch, None)
        for seq in finished:
            runner.release(seq)
        ahead: Optional[tuple[ScheduledBatch, PackedStep]] = None
        deferred = pipeline and not scheduler.can_schedule_ahead()
        if pipeline and not deferred and (batch := scheduler.schedule()) is not None:
            ahead = (batch, runner.prepare(batch, flight.pending))
        sampled = runner.wait()
        end = time.perf_counter_ns()
        self._flight = None
        if pipeline and (ahead := self._decide(ahead, deferred, flight.pending)) is not None:
            self._launch(*ahead, end)
        scheduler.settle(flight.batch, sampled)
        with self._lock:
            self._active.difference_update(s.seq_id for s in finished)
        shape = flight.packed.graph_shape
        if shape is None:
            self.num_eager_steps += 1
        else:
            self.num_graph_steps += 1
            self.num_prefill_graph_steps += shape[0] != shape[1]
        return StepOutput(flight.start_ns, end, flight.batch, sampled, finished, shape)

    def _decide(self, ahead: Optional[tuple[ScheduledBatch, PackedStep]], deferred: bool,
                pending: dict[Sequence, int]) -> Optional[tuple[ScheduledBatch, PackedStep]]:
        """At an iteration's end: the requests that arrived during it join the queue, and the next iteration, formed
        ahead or ``deferred`` to now, is decided for good (packed again if it changed: from where the packing ahead
        stopped when the change only admits requests after its entries, ``ModelRunner.prepare``)."""
        runner, scheduler = self.runner, self.scheduler
        arrived = self._queue_arrivals()
        if ahead is not None:
            if arrived and (batch := scheduler.revise(ahead[0])) is not ahead[0]:
                if batch is None:
                    runner.discard(ahead[1])
                    return None
                return batch, runner.prepare(batch, pending, revises=ahead[1])
            return ahead
        if (arrived or deferred) and (batch := scheduler.schedule()) is not None:
            return batch, runner.prepare(batch, pending)
        return None

    def _launch(self, batch: ScheduledBatch, packed: PackedStep, start_ns: int) -> None:
        self.runner.launch(packed)
        pending = {e.seq: k for k, e in enumerate(e for e in batch.entries if e.samples)}
        self._flight = _Flight(batch, packed, start_ns, pending)

    def _queue_arrivals(self) -> bool:
        """Move the requests added since the last decision into the scheduler's queue, in the order added."""
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
        for seq in arrivals:
            self.scheduler.add(seq)
        return bool(arrivals)

    def has_unfinished(self) -> bool:
        return self._flight is not None or bool(self._arrivals) or self.scheduler.has_unfinished()

    def stats(self) -> dict:
        """What the run's meta records: the pool, graphs and compilations at start-up and since, preemptions.
        ``compilations_*`` count Triton kernel variants loaded (the engine uses no ``torch.compile``)."""
        return {
            "num_blocks": self.num_blocks,
            "block_size": self.config.block_size,
            "memory": None if self.memory is None else self.memory.as_dict(),
            "kernel_path": kernels.kernel_path(self.runner.device),
            "cuda_graph_batch_sizes": list(self.runner.graph_sizes),
            "cuda_graph_token_sizes": list(self.runner.graph_token_sizes),
            "cuda_graph_captures_at_startup": self._captures_at_startup,
            "cuda_graph_captures_since_startup": self.runner.num_captures - self._captures_at_startup,
            "compilations_at_startup": self._loads_at_startup,
            "compilations_since_startup": TritonLoads.count - self._loads_at_startup,
            "graph_steps": self.num_graph_steps,
            "prefill_graph_steps": self.num_prefill_graph_steps,
            "eager_steps": self.num_eager_steps,
            "preemptions": self.scheduler.num_preemptions,
        }


class _Flight(NamedTuple):
    """The iteration launched and not returned yet; ``pending``: its sampling sequences, by their index among its
    sampled tokens (their next inputs are those tokens, packed before they exist)."""

    batch: ScheduledBatch
    packed: PackedStep
    start_ns: int
    pending: dict[Sequence, int]


def _check_config(config: EngineConfig) -> torch.device:
    """Refuse a bad config before anything is loaded; return the device."""
    if config.policy not in POLICIES:
        raise InputError(f"engine policy {config.policy!r} is unknown; choose one of {list(POLICIES)}")
    if config.dtype not in _DTYPES:
        raise InputError(f"engine dtype {config.dtype!r} is not one of {sorted(_DTYPES)}")
    if config.device == "cpu":
        if config.num_blocks is None:
            raise InputError("num_blocks: null sizes the KV pool from GPU memory; on the CPU set num_blocks")
        return torch.device("cpu")
    if config.device != "cuda":
        raise InputError(f"engine device must be 'cuda' or 'cpu', not {config.device!r}")
    if not torch.cuda.is_available():
        raise EnvironmentUnavailableError("the engine's device is 'cuda', but torch sees no GPU here; "
                                          "use a GPU machine or device 'cpu'")
    return torch.device("cuda", torch.cuda.current_device())
