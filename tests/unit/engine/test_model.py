"""The engine's Qwen3 model against transformers' on the same weights (CPU, float32, the reference kernels)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _qwen3_tiny import TINY, hf_model, prompts
from gpu_simulate_test.engine.model import AttentionInputs, Qwen3Model
from gpu_simulate_test.errors import InputError

BLOCK = 4
TOL = dict(rtol=1e-4, atol=1e-4)  # float32 through two layers: fused vs separate matmuls differ by ~1e-6


def _pack(parts: list[tuple[list[int], list[int], int, int]]):
    """parts: (all token ids, block table, start, n) -> the model's inputs, built independently of the runner."""
    ids, pos, slots, cu, lens = [], [], [], [0], []
    width = max(len(t) for _, t, _, _ in parts)
    tables = torch.zeros(len(parts), width, dtype=torch.int32)
    for b, (tokens, table, start, n) in enumerate(parts):
        for p in range(start, start + n):
            ids.append(tokens[p])
            pos.append(p)
            slots.append(table[p // BLOCK] * BLOCK + p % BLOCK)
        cu.append(cu[-1] + n)
        lens.append(start + n)
        tables[b, : len(table)] = torch.tensor(table)
    i32 = lambda x: torch.tensor(x, dtype=torch.int32)  # noqa: E731
    return i32(ids), i32(pos), AttentionInputs(i32(slots), i32(cu), i32(lens), tables)


def _kv(num_blocks: int, shape=TINY) -> torch.Tensor:
    return torch.zeros(2, shape.num_layers, num_blocks, BLOCK, shape.num_kv_heads, shape.head_dim)


@pytest.fixture(scope="module")
def hf():
    return hf_model()


@pytest.fixture(scope="module")
def model(hf):
    return Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu"))


def _hf_logits(hf, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([tokens])).logits[0]


def test_prefill_then_chunk_and_decode_match_hf(hf, model):
    a, b = prompts([14, 6])
    table_a, table_b = [5, 2, 9, 12], [0, 7]  # out of order, as the pool hands them out
    kv = _kv(16)
    # iteration 1: A's first 11 tokens and all of B, every token's logits
    ids, pos, attn = _pack([(a, table_a, 0, 11), (b, table_b, 0, 6)])
    got = model.forward(ids, pos, attn, kv, None)
    want = torch.cat([_hf_logits(hf, a[:11]), _hf_logits(hf, b)])
    torch.testing.assert_close(got, want, **TOL)
    # iteration 2: A's last 3 prompt tokens over its cached 11, B decodes one token; the head on last tokens only
    b_next = b + [int(want[-1].argmax())]
    ids, pos, attn = _pack([(a, table_a, 11, 3), (b_next, table_b, 6, 1)])
    got = model.forward(ids, pos, attn, kv, torch.tensor([2, 3], dtype=torch.int32))
    want = torch.stack([_hf_logits(hf, a)[-1], _hf_logits(hf, b_next)[-1]])
    torch.testing.assert_close(got, want, **TOL)


def test_untied_head_matches_hf():
    shape = dataclasses.replace(TINY, tie_word_embeddings=False, vocab_size=1000)
    hf = hf_model(shape, seed=3)
    assert hf.lm_head.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()
    model = Qwen3Model.from_hf_state_dict(shape, hf.state_dict(), torch.float32, torch.device("cpu"))
    (tokens,) = prompts([9], vocab=1000)
    ids, pos, attn = _pack([(tokens, [3, 1, 0], 0, 9)])
    got = model.forward(ids, pos, attn, _kv(4, shape), None)
    torch.testing.assert_close(got, _hf_logits(hf, tokens), **TOL)


def test_fused_weights_and_sizes(hf, model):
    sd = hf.state_dict()
    layer = model.layers[1]
    q, k, v = (sd[f"model.layers.1.self_attn.{x}_proj.weight"] for x in "qkv")
    assert torch.equal(layer.w.qkv_proj, torch.cat([q, k, v]))
    gate, up = sd["model.layers.1.mlp.gate_proj.weight"], sd["model.layers.1.mlp.up_proj.weight"]
    assert torch.equal(layer.w.gate_up_proj, torch.cat([gate, up]))
    assert model.lm_head is model.embed_tokens  # tied: one tensor
    assert model.num_bytes == 4 * sum(p.numel() for p in hf.parameters())  # parameters() lists a tied one once


def test_missing_or_misshapen_weights_are_clear_errors(hf):
    sd = dict(hf.state_dict())
    del sd["model.layers.1.self_attn.k_norm.weight"]
    with pytest.raises(InputError, match="k_norm"):
        Qwen3Model.from_hf_state_dict(TINY, sd, torch.float32, torch.device("cpu"))
    wrong = dataclasses.replace(TINY, vocab_size=1000)
    with pytest.raises(InputError, match="embeddings"):
        Qwen3Model.from_hf_state_dict(wrong, hf.state_dict(), torch.float32, torch.device("cpu"))
    wrong = dataclasses.replace(TINY, num_kv_heads=4)
    with pytest.raises(InputError, match="layer 0's qkv_proj is \\(256, 128\\), the model shape says \\(384, 128\\)"):
        Qwen3Model.from_hf_state_dict(wrong, hf.state_dict(), torch.float32, torch.device("cpu"))
