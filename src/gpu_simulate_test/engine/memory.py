"""How many KV blocks fit on the device: vLLM's rule, ``gpu_memory_utilization`` of its memory after the rest."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gpu_simulate_test.engine.config import ModelShape
from gpu_simulate_test.errors import InputError


def kv_block_bytes(shape: ModelShape, block_size: int, element_size: int) -> int:
    """Bytes of one block of K and V across all layers."""
    return shape.kv_bytes_per_token * block_size * element_size


@dataclass(frozen=True)
class MemoryPlan:
    """The device memory at start-up, in bytes, and the blocks that fit (recorded in the run's meta)."""

    total: int  # the device's memory
    gpu_memory_utilization: float
    resident: int  # held before the pool: the weights, the step buffers, anything else the process holds
    peak_activations: int  # over that, in the dry-run forwards (``max_batch_tokens`` tokens; the most sampled rows)
    graph_reserve: int  # held for the CUDA graphs' pool: a decode forward at the largest graph bucket
    non_torch: int  # CUDA context, cuBLAS workspaces: device memory torch's allocator does not hold
    block_bytes: int
    blocks_that_fit: int

    def as_dict(self) -> dict:
        return asdict(self)


def plan_kv_pool(*, total: int, gpu_memory_utilization: float, resident: int, peak_activations: int,
                 graph_reserve: int, non_torch: int, block_bytes: int) -> MemoryPlan:
    """Blocks in ``gpu_memory_utilization * total`` once the resident tensors, peak activations, graphs and the
    rest are held."""
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise InputError(f"gpu_memory_utilization must be in (0, 1], not {gpu_memory_utilization}")
    budget = int(gpu_memory_utilization * total) - resident - peak_activations - graph_reserve - non_torch
    return MemoryPlan(total=total, gpu_memory_utilization=gpu_memory_utilization, resident=resident,
                      peak_activations=peak_activations, graph_reserve=graph_reserve, non_torch=non_torch,
                      block_bytes=block_bytes, blocks_that_fit=max(0, budget // block_bytes))
