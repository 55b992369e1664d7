"""Mirror the real backend's batching policy and KV capacity in Vidur's replica scheduler and cache config.

``backend.vidur_scheduler`` names the policy; each entry of :data:`SCHEDULERS` turns the backend's limits
into Vidur's scheduler config and says how many tokens one iteration and one prefill chunk can hold,
so that vidur-sim can check the profile covers them. Where a policy cannot be matched, specs/vidur_sim.md says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vidur.config import BaseReplicaSchedulerConfig, CacheConfig, ReplicaConfig, SarathiSchedulerConfig, VllmSchedulerConfig
from vidur.utils.memory_planner import MemoryPlanner

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.workloads.load import Workload


@dataclass(frozen=True)
class SchedulerPlan:
    """Vidur's scheduler config and the largest shapes it can form on this workload."""

    config: BaseReplicaSchedulerConfig
    max_tokens_per_iteration: int
    max_prefill_chunk: int
    max_batch_size: int

    def describe(self) -> dict[str, object]:
        cfg = self.config
        return {"name": str(cfg.get_type()), **{k: v for k, v in vars(cfg).items() if not k.startswith("_")}}


def _batch_cap(backend: BackendConfig, workload: Workload) -> int:
    cap = int(backend.max_requests_per_batch)
    if cap < 1:
        raise InputError(f"backend {backend.name}: max_requests_per_batch={cap}; it must be >= 1")
    return cap


def _vllm(backend: BackendConfig, workload: Workload) -> SchedulerPlan:
    """Whole prompts, FIFO, up to ``max_requests_per_batch`` (1 for hf-generate: one request at a time)."""
    cap = _batch_cap(backend, workload)
    limit = int(backend.max_batch_tokens) if backend.max_batch_tokens is not None else workload.max_prefill
    if workload.max_prefill > limit:
        raise InputError(
            f"backend {backend.name}: a prompt of {workload.max_prefill} tokens exceeds max_batch_tokens={limit}; "
            "the vllm policy prefills whole prompts, so it would never be scheduled (raise backend.max_batch_tokens)"
        )
    config = VllmSchedulerConfig(batch_size_cap=cap, max_tokens_in_batch=limit, max_batched_tokens=limit)
    busiest = max(limit, min(cap, len(workload.requests)))
    return SchedulerPlan(config, busiest, workload.max_prefill, min(cap, len(workload.requests)))


def _sarathi(backend: BackendConfig, workload: Workload) -> SchedulerPlan:
    """Chunked prefill: ``chunk_size = max_batch_tokens`` (null: whole prompts), ``batch_size_cap`` = max requests."""
    cap = _batch_cap(backend, workload)
    chunk = int(backend.max_batch_tokens) if backend.max_batch_tokens is not None else workload.max_prefill
    if chunk < 1:
        raise InputError(f"backend {backend.name}: max_batch_tokens={chunk}; it must be >= 1")
    config = SarathiSchedulerConfig(batch_size_cap=cap, chunk_size=chunk)
    batch = min(cap, len(workload.requests))
    # Decodes take one token each before the chunk budget is filled, so an iteration holds at most this many.
    return SchedulerPlan(config, max(min(chunk, workload.max_prefill), batch), min(chunk, workload.max_prefill), batch)


SCHEDULERS: dict[str, Callable[[BackendConfig, Workload], SchedulerPlan]] = {
    "vllm": _vllm,
    "sarathi": _sarathi,
}


def plan_scheduler(backend: BackendConfig, workload: Workload) -> SchedulerPlan:
    make = SCHEDULERS.get(str(backend.vidur_scheduler))
    if make is None:
        raise InputError(
            f"backend {backend.name}: vidur_scheduler={backend.vidur_scheduler!r} has no mapping; "
            f"vidur-sim supports {sorted(SCHEDULERS)} (Vidur 0.0.26's orca scheduler drops KV lengths of new requests)"
        )
    return make(backend, workload)


def cache_config(backend: BackendConfig, workload: Workload, replica: ReplicaConfig) -> CacheConfig:
    """The real engine's KV capacity: blocks, block size, watermark.

    ``num_blocks: null`` (engines without a paged cache) means what fits in device memory, by Vidur's own
    ``MemoryPlanner``; Vidur's fallback would floor ``max_tokens / block_size`` and give 0 blocks for short requests.
    """
    block_size = int(backend.block_size)
    if block_size < 1:
        raise InputError(f"backend {backend.name}: block_size={block_size}; it must be >= 1")
    if backend.num_blocks is None:
        blocks = int(MemoryPlanner(replica, CacheConfig(block_size=block_size)).get_max_kv_cache_size_in_tokens()) // block_size
    else:
        blocks = int(backend.num_blocks)
    if blocks < 1:
        raise InputError(f"backend {backend.name}: num_blocks resolves to {blocks}; it must be >= 1")
    usable = blocks - int(float(backend.watermark_blocks_fraction) * blocks)
    need = -(-workload.max_context // block_size)
    if need > usable:
        raise InputError(
            f"backend {backend.name}: the longest request ({workload.max_context} tokens) needs {need} KV blocks of "
            f"{block_size} tokens, but {blocks} blocks leave {usable} above the watermark; it could never run "
            "(raise backend.num_blocks, or use hardware with more memory)"
        )
    return CacheConfig(block_size=block_size, num_blocks=blocks, watermark_blocks_fraction=float(backend.watermark_blocks_fraction))
