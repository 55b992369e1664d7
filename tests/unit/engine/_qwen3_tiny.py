"""The ``qwen3-tiny`` shape in float32 as a transformers model and as the engine's config, over the very same
weights. Weights are drawn wider than transformers' default (and the norms away from 1), so that greedy choices are
well separated and a wrong mapping of any weight changes them."""

from __future__ import annotations

import dataclasses

import torch
import transformers

from gpu_simulate_test.engine.config import EngineConfig, ModelShape

TINY = ModelShape(hidden_size=128, num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=32,
                  intermediate_size=384, vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)


def hf_model(shape: ModelShape = TINY, seed: int = 0) -> transformers.Qwen3ForCausalLM:
    cfg = transformers.Qwen3Config(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings, rope_theta=shape.rope_theta,
        rms_norm_eps=shape.rms_norm_eps, tie_word_embeddings=shape.tie_word_embeddings, initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def engine_config(shape: ModelShape = TINY, **overrides: object) -> EngineConfig:
    base = EngineConfig(model=shape, dtype="float32", device="cpu", num_blocks=256, block_size=4,
                        max_batch_tokens=64, max_requests_per_batch=8)
    return dataclasses.replace(base, **overrides)


def prompts(lengths: list[int], seed: int = 1, vocab: int = TINY.vocab_size) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]
