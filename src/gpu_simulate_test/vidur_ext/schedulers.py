"""Mirror the real backend's batching policy and KV capacity in Vidur's replica scheduler and cache configs.

The backend's limits are resolved once (``config/limits.py``); here they become Vidur's configs, and only here do
Vidur's own names for them appear. :data:`SCHEDULERS` maps each policy (``backend.vidur_scheduler``) to Vidur's
scheduler config. Where a policy cannot be matched, specs/vidur_sim.md says so.
"""

from __future__ import annotations

from typing import Callable

from vidur.config import BaseReplicaSchedulerConfig, CacheConfig, ReplicaConfig, SarathiSchedulerConfig, VllmSchedulerConfig
from vidur.utils.memory_planner import MemoryPlanner

from gpu_simulate_test.config.limits import Limits
from gpu_simulate_test.errors import InputError


def _vllm(backend: str, limits: Limits) -> BaseReplicaSchedulerConfig:
    """Whole prompts, FIFO, up to the batch cap (1 for hf-generate: one request at a time)."""
    if limits.prefill_chunk > limits.token_budget:
        raise InputError(
            f"backend {backend}: a prompt of {limits.prefill_chunk} tokens exceeds max_batch_tokens={limits.token_budget}; "
            "the vllm policy prefills whole prompts, so it would never be scheduled (raise backend.max_batch_tokens)"
        )
    return VllmSchedulerConfig(batch_size_cap=limits.batch_cap, max_tokens_in_batch=limits.token_budget,
                               max_batched_tokens=limits.token_budget)


def _sarathi(backend: str, limits: Limits) -> BaseReplicaSchedulerConfig:
    """Chunked prefill: the token budget is the chunk size, shared by decodes and prompt chunks."""
    return SarathiSchedulerConfig(batch_size_cap=limits.batch_cap, chunk_size=limits.token_budget)


SCHEDULERS: dict[str, Callable[[str, Limits], BaseReplicaSchedulerConfig]] = {
    "vllm": _vllm,
    "sarathi": _sarathi,
}


def scheduler_config(backend: str, limits: Limits) -> BaseReplicaSchedulerConfig:
    """Vidur's replica scheduler config for backend ``backend`` with these limits."""
    return SCHEDULERS[limits.policy](backend, limits)


def describe(config: BaseReplicaSchedulerConfig) -> dict[str, object]:
    """The scheduler config as run_meta.json records it: Vidur's name and fields."""
    return {"name": str(config.get_type()), **{k: v for k, v in vars(config).items() if not k.startswith("_")}}


def cache_config(backend: str, limits: Limits, longest_request: int, replica: ReplicaConfig) -> CacheConfig:
    """The real engine's KV capacity: blocks, block size, watermark.

    ``num_blocks: null`` means what fits in device memory, by Vidur's own ``MemoryPlanner``; Vidur's fallback would
    floor ``max_tokens / block_size`` and give 0 blocks for short requests.
    """
    block_size = limits.block_size
    if limits.num_blocks is None:
        blocks = int(MemoryPlanner(replica, CacheConfig(block_size=block_size)).get_max_kv_cache_size_in_tokens()) // block_size
    else:
        blocks = limits.num_blocks
    if blocks < 1:
        raise InputError(f"backend {backend}: num_blocks resolves to {blocks}; it must be >= 1")
    usable = blocks - int(limits.watermark_blocks_fraction * blocks)
    need = -(-longest_request // block_size)
    if need > usable:
        raise InputError(
            f"backend {backend}: the longest request ({longest_request} tokens) needs {need} KV blocks of "
            f"{block_size} tokens, but {blocks} blocks leave {usable} above the watermark; it could never run "
            "(raise backend.num_blocks, or use hardware with more memory)"
        )
    return CacheConfig(block_size=block_size, num_blocks=blocks, watermark_blocks_fraction=limits.watermark_blocks_fraction)
