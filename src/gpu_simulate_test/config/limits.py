"""A backend's batching and KV-cache limits, worked out from its config in one place.

The knobs are ``backend.max_batch_tokens`` and ``backend.max_requests_per_batch`` (with ``block_size``,
``num_blocks``, ``watermark_blocks_fraction`` and ``gpu_memory_utilization`` for the KV cache); every stage reads them
through :func:`resolve_limits`, under one vocabulary:

- ``token_budget``: tokens one iteration may hold (decodes and prompt chunks together). ``max_batch_tokens: null``
  means whole prompts: the budget is then the longest prompt of the workload (or of the profile's grid).
- ``prefill_chunk``: the most prompt tokens of one request in one iteration.
- ``batch_cap``: requests one iteration may hold; ``batch_size``: the most it can hold on this workload.
- ``tokens_per_iteration``: the most tokens one iteration can hold on this workload: the budget, filled by the
  prompt chunks of several requests at once, or one token per decode when the batch holds more requests than that.
- ``num_blocks`` x ``block_size``: the paged KV cache (:func:`workload_kv_blocks` sizes it from the workload for an
  engine that sizes it from GPU memory but runs on the CPU).

``policy`` is how an iteration is filled, named after the Vidur scheduler that mirrors the engine
(``backend.vidur_scheduler``): ``vllm`` prefills whole prompts, ``sarathi`` cuts them into chunks of the budget.
Vidur's own names (``chunk_size``, ``batch_size_cap``, ``max_tokens_in_batch``) appear only where
``vidur_ext/schedulers.py`` builds Vidur's configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.engine.config import POLICIES  # the native engine runs exactly these (dataclasses only)
from gpu_simulate_test.errors import InputError


@dataclass(frozen=True)
class Limits:
    """One backend's limits on one workload (see the module docstring for each name)."""

    policy: str
    token_budget: int
    prefill_chunk: int
    batch_cap: int
    batch_size: int
    tokens_per_iteration: int
    block_size: int
    # null: not fixed by the config. The real engines size their own (hf-continuous: transformers from free memory;
    # sarathi and native: from gpu_memory_utilization, recorded in run_meta.json; native on the CPU:
    # workload_kv_blocks); hf-generate has no paged cache. vidur-sim takes the count a real run recorded
    # (real_run=<id>), else Vidur's MemoryPlanner sizes it (never for native).
    num_blocks: Optional[int]
    watermark_blocks_fraction: float
    gpu_memory_utilization: float


def resolve_limits(backend: BackendConfig, longest_prompt: int, num_requests: Optional[int] = None) -> Limits:
    """``backend``'s limits for requests whose longest prompt has ``longest_prompt`` tokens (``num_requests`` of them;
    None: as many as the batch cap allows, as for a profile's grid)."""
    where = f"backend {backend.name}"
    policy = str(backend.vidur_scheduler)
    if policy not in POLICIES:
        raise InputError(
            f"{where}: vidur_scheduler={policy!r} names no batching policy here; use one of {list(POLICIES)} "
            "(Vidur 0.0.26's orca scheduler drops the KV lengths of new requests)"
        )
    cap = int(backend.max_requests_per_batch)
    budget = int(backend.max_batch_tokens) if backend.max_batch_tokens is not None else int(longest_prompt)
    for knob, value in (("max_requests_per_batch", cap), ("max_batch_tokens", budget), ("block_size", backend.block_size)):
        if value < 1:
            raise InputError(f"{where}: {knob}={value}; it must be >= 1")
    if backend.num_blocks is not None and backend.num_blocks < 1:
        raise InputError(f"{where}: num_blocks={backend.num_blocks}; it must be >= 1, or null")
    if not 0.0 <= backend.watermark_blocks_fraction < 1.0:
        raise InputError(f"{where}: watermark_blocks_fraction={backend.watermark_blocks_fraction}; it must be in [0, 1)")
    if not 0.0 < backend.gpu_memory_utilization <= 1.0:
        raise InputError(f"{where}: gpu_memory_utilization={backend.gpu_memory_utilization}; it must be in (0, 1]")
    batch = cap if num_requests is None else min(cap, int(num_requests))
    if policy == "sarathi":
        chunk = min(budget, int(longest_prompt))
        # Prompt chunks of several requests share the budget (two 604-token prompts fill one 2048-token iteration
        # with 1208 tokens); decodes take one token each, even past the budget.
        tokens = max(min(budget, batch * int(longest_prompt)), batch)
    else:
        chunk = int(longest_prompt)
        tokens = max(budget, batch)
    return Limits(policy=policy, token_budget=budget, prefill_chunk=chunk, batch_cap=cap, batch_size=batch,
                  tokens_per_iteration=tokens, block_size=int(backend.block_size), num_blocks=backend.num_blocks,
                  watermark_blocks_fraction=float(backend.watermark_blocks_fraction),
                  gpu_memory_utilization=float(backend.gpu_memory_utilization))


def workload_kv_blocks(limits: Limits, longest_context: int) -> int:
    """A KV pool sized from the workload, for an engine that sizes its own from GPU memory (``num_blocks: null``)
    but runs on the CPU (the native engine there): ``batch_size`` requests of ``longest_context`` tokens held at
    once, plus the one free block a running decode needs, all above the watermark. No request then waits for
    memory or is preempted."""
    need = limits.batch_size * math.ceil(longest_context / limits.block_size) + 1
    blocks = need
    while blocks - int(limits.watermark_blocks_fraction * blocks) < need:  # the watermark as the policies round it
        blocks += 1
    return blocks
