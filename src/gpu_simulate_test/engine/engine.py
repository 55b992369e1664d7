"""The step loop: schedule, run, sample, and the record of every iteration."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional

import torch

from gpu_simulate_test.engine import kernels
from gpu_simulate_test.engine.config import POLICIES, EngineConfig
from gpu_simulate_test.engine.memory import MemoryPlan, kv_block_bytes, plan_kv_pool
from gpu_simulate_test.engine.model import Qwen3Model
from gpu_simulate_test.engine.runner import ModelRunner, TritonLoads
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
    """One iteration. ``start_ns`` / ``end_ns``: ``time.perf_counter_ns`` before scheduling and once the sampled
    tokens are on the host and the scheduler has applied them. The per-entry views are built on access, so that
    building them never delays the step itself."""

    start_ns: int
    end_ns: int
    batch: ScheduledBatch
    sampled: list[int]  # one token per sampling entry, in entry order
    finished_seqs: list[Sequence]
    cuda_graph: bool  # the forward was a graph replay

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
        """Queue a request; it generates exactly ``max_tokens`` tokens (no EOS). ``arrival_time_ns`` orders
        preempted sequences as Vidur does (by arrival); by default, now."""
        if request_id in self._active:
            raise InputError(f"request id {request_id} was added already")
        vocab = self.config.model.vocab_size
        if prompt_token_ids and not (0 <= min(prompt_token_ids) and max(prompt_token_ids) < vocab):
            raise InputError(f"request {request_id} has token ids outside the vocabulary [0, {vocab})")
        seq = Sequence(seq_id=request_id, token_ids=list(prompt_token_ids), num_prompt_tokens=len(prompt_token_ids),
                       max_tokens=max_tokens,
                       arrival_time_ns=time.perf_counter_ns() if arrival_time_ns is None else arrival_time_ns)
        self.scheduler.add(seq)  # checks it against the context and the pool
        self._active.add(request_id)

    def step(self) -> StepOutput:
        """One iteration: schedule, run the model, sample, apply."""
        start = time.perf_counter_ns()
        batch = self.scheduler.schedule()
        if batch is None:
            raise RuntimeError("step() with nothing to run: call it only while has_unfinished()")
        sampled = self.runner.run(batch)
        shape = self.runner.last_graph_shape
        graph = shape is not None
        finished = self.scheduler.postprocess(batch, sampled)
        for seq in finished:
            self.runner.release(seq)
            self._active.discard(seq.seq_id)
        end = time.perf_counter_ns()
        if graph:
            self.num_graph_steps += 1
            self.num_prefill_graph_steps += shape[0] != shape[1]
        else:
            self.num_eager_steps += 1
        return StepOutput(start, end, batch, sampled, finished, graph)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

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
