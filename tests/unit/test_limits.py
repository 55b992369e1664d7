"""config.limits.resolve_limits: one place that turns backend.max_batch_tokens / max_requests_per_batch (and the KV
settings) into what every stage uses, and the Vidur configs made from it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.limits import POLICIES, resolve_limits, workload_kv_blocks
from gpu_simulate_test.errors import InputError

SARATHI = BackendConfig(name="b", vidur_scheduler="sarathi", max_batch_tokens=512, max_requests_per_batch=32, num_blocks=64)
VLLM = BackendConfig(name="b", vidur_scheduler="vllm", max_batch_tokens=None, max_requests_per_batch=1)


def test_sarathi_chunks_prompts_by_the_token_budget() -> None:
    lim = resolve_limits(SARATHI, longest_prompt=2000, num_requests=10)
    assert (lim.policy, lim.token_budget, lim.prefill_chunk, lim.batch_cap, lim.batch_size) == ("sarathi", 512, 512, 32, 10)
    assert lim.tokens_per_iteration == 512 and lim.num_blocks == 64 and lim.block_size == 256
    short = resolve_limits(SARATHI, longest_prompt=20, num_requests=100)
    # 32 prompts of 20 tokens would be 640: the chunks of several prompts fill the 512-token budget
    assert (short.prefill_chunk, short.batch_size, short.tokens_per_iteration) == (20, 32, 512)
    assert resolve_limits(SARATHI, longest_prompt=20).batch_size == 32  # no request count: as many as the cap allows
    tiny = resolve_limits(replace(SARATHI, max_batch_tokens=16, max_requests_per_batch=64), longest_prompt=20)
    assert tiny.tokens_per_iteration == 64  # 64 decodes take one token each, past the 16-token budget


def test_sarathi_iteration_packs_several_prompts_up_to_the_budget() -> None:
    """The issue's crash: 604-token prompts under a 2048-token budget; two of them make a 1208-token iteration."""
    budget = replace(SARATHI, max_batch_tokens=2048)
    assert resolve_limits(budget, longest_prompt=604, num_requests=1).tokens_per_iteration == 604
    assert resolve_limits(budget, longest_prompt=604, num_requests=2).tokens_per_iteration == 1208
    assert resolve_limits(budget, longest_prompt=604, num_requests=10).tokens_per_iteration == 2048


def test_null_budget_means_whole_prompts_for_every_policy() -> None:
    for backend in (replace(SARATHI, max_batch_tokens=None), VLLM):
        lim = resolve_limits(backend, longest_prompt=700, num_requests=5)
        assert lim.token_budget == lim.prefill_chunk == 700, backend.vidur_scheduler
    vllm = resolve_limits(replace(VLLM, max_batch_tokens=4096, max_requests_per_batch=8), longest_prompt=700, num_requests=5)
    assert (vllm.prefill_chunk, vllm.tokens_per_iteration, vllm.batch_size) == (700, 4096, 5)  # whole prompts, the budget


@pytest.mark.parametrize("change, message", [
    ({"vidur_scheduler": "orca"}, "vidur_scheduler='orca' names no batching policy"),
    ({"max_requests_per_batch": 0}, "max_requests_per_batch=0; it must be >= 1"),
    ({"max_batch_tokens": 0}, "max_batch_tokens=0; it must be >= 1"),
    ({"block_size": 0}, "block_size=0; it must be >= 1"),
    ({"num_blocks": 0}, "num_blocks=0; it must be >= 1, or null"),
    ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization=1.5; it must be in \(0, 1\]"),
    ({"watermark_blocks_fraction": 1.0}, r"watermark_blocks_fraction=1.0; it must be in \[0, 1\)"),
])
def test_impossible_settings_are_one_clear_error(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"backend b: {message}"):
        resolve_limits(replace(SARATHI, **change), longest_prompt=100)


@pytest.mark.parametrize("watermark", [0.0, 0.01, 0.2])
def test_workload_pool_holds_every_admitted_request_at_its_longest_context(watermark: float) -> None:
    """The CPU pool of an engine that sizes its own from GPU memory: the fewest blocks that leave, above the
    watermark, every request the cap admits at the longest context plus the free block a decode needs."""
    lim = resolve_limits(replace(SARATHI, num_blocks=None, block_size=16, watermark_blocks_fraction=watermark),
                         longest_prompt=100, num_requests=10)
    need = 10 * 63 + 1  # 10 requests (cap 32) of 1000 tokens: 63 blocks each
    n = workload_kv_blocks(lim, 1000)
    assert n - int(watermark * n) >= need > (n - 1) - int(watermark * (n - 1))
    assert workload_kv_blocks(resolve_limits(replace(SARATHI, block_size=16), longest_prompt=100), 16) == 32 + 1


def test_vidur_configs_come_from_the_limits() -> None:
    from gpu_simulate_test.vidur_ext.schedulers import SCHEDULERS, describe, scheduler_config

    assert set(SCHEDULERS) == set(POLICIES)
    sarathi = describe(scheduler_config("b", resolve_limits(SARATHI, longest_prompt=2000, num_requests=10)))
    assert (sarathi["name"], sarathi["chunk_size"], sarathi["batch_size_cap"]) == ("sarathi", 512, 32)
    vllm = describe(scheduler_config("b", resolve_limits(VLLM, longest_prompt=300, num_requests=3)))
    assert (vllm["name"], vllm["max_tokens_in_batch"], vllm["batch_size_cap"]) == ("vllm", 300, 1)
    with pytest.raises(InputError, match="a prompt of 2000 tokens exceeds max_batch_tokens=512; the vllm policy"):
        scheduler_config("b", resolve_limits(replace(VLLM, max_batch_tokens=512), longest_prompt=2000))
