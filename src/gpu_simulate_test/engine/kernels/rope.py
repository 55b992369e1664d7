"""Qwen3's qk-norm and neox RoPE in Triton, in place on q/k views into the fused qkv output; optionally fused with
the KV store (``qk_norm_rope_store_kv``: at batch 1 every launch of the 28 layers counts).

One program per token holds all its q and k heads as two halves ``[heads, head_dim / 2]``, so the rotation
``(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)`` needs no shuffle. The norm rounds where transformers rounds
(normalised value cast to the dtype, then times the weight); cos/sin are cast to the dtype as transformers casts
them; the rotation itself is computed in float32 and rounded once.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from gpu_simulate_test.engine.kernels.cache import check_cache, store_heads


@triton.jit
def _norm_rope_heads(ptr, stride_head, weight_ptr, cos, sin, eps, NUM_HEADS: tl.constexpr, HEADS_PAD: tl.constexpr,
                     HALF: tl.constexpr):
    """Normalise and rotate one token's heads in place; returns the two rotated halves (float32)."""
    heads = tl.arange(0, HEADS_PAD)
    offs = tl.arange(0, HALF)
    ok = (heads < NUM_HEADS)[:, None]
    lo_ptrs = ptr + heads[:, None] * stride_head + offs[None, :]
    x1 = tl.load(lo_ptrs, mask=ok, other=0.0)
    x2 = tl.load(lo_ptrs + HALF, mask=ok, other=0.0)
    h1, h2 = x1.to(tl.float32), x2.to(tl.float32)
    inv = tl.rsqrt((tl.sum(h1 * h1, axis=1) + tl.sum(h2 * h2, axis=1)) / (2 * HALF) + eps)[:, None]
    w1 = tl.load(weight_ptr + offs).to(tl.float32)[None, :]
    w2 = tl.load(weight_ptr + HALF + offs).to(tl.float32)[None, :]
    y1 = ((h1 * inv).to(x1.dtype).to(tl.float32) * w1).to(x1.dtype).to(tl.float32)
    y2 = ((h2 * inv).to(x1.dtype).to(tl.float32) * w2).to(x1.dtype).to(tl.float32)
    r1 = y1 * cos - y2 * sin
    r2 = y2 * cos + y1 * sin
    tl.store(lo_ptrs, r1.to(x1.dtype), mask=ok)
    tl.store(lo_ptrs + HALF, r2.to(x1.dtype), mask=ok)
    return r1, r2


@triton.jit
def _qk_norm_rope_kernel(q_ptr, k_ptr, v_ptr, q_weight_ptr, k_weight_ptr, positions_ptr, cos_sin_ptr,
                         k_cache_ptr, v_cache_ptr, slot_ptr, eps, stride_q_tok, stride_q_head, stride_k_tok,
                         stride_k_head, stride_v_tok, stride_v_head, stride_cos_sin, stride_block, stride_slot,
                         stride_head, NUM_Q_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr,
                         Q_HEADS_PAD: tl.constexpr, KV_HEADS_PAD: tl.constexpr, HALF: tl.constexpr,
                         PAGE: tl.constexpr, STORE_KV: tl.constexpr):
    tok = tl.program_id(0)
    offs = tl.arange(0, HALF)
    cs_ptr = cos_sin_ptr + tl.load(positions_ptr + tok).to(tl.int64) * stride_cos_sin
    dtype = q_ptr.dtype.element_ty
    cos = tl.load(cs_ptr + offs).to(dtype).to(tl.float32)[None, :]
    sin = tl.load(cs_ptr + HALF + offs).to(dtype).to(tl.float32)[None, :]
    _norm_rope_heads(q_ptr + tok * stride_q_tok, stride_q_head, q_weight_ptr, cos, sin, eps, NUM_Q_HEADS,
                     Q_HEADS_PAD, HALF)
    k1, k2 = _norm_rope_heads(k_ptr + tok * stride_k_tok, stride_k_head, k_weight_ptr, cos, sin, eps, NUM_KV_HEADS,
                              KV_HEADS_PAD, HALF)
    if STORE_KV:
        slot = tl.load(slot_ptr + tok)
        heads = tl.arange(0, KV_HEADS_PAD)
        ok = (heads < NUM_KV_HEADS)[:, None]
        # the cache gets exactly what the in-place k holds
        store_heads(k_cache_ptr, slot, heads, offs, k1.to(dtype), stride_block, stride_slot, stride_head, ok, PAGE)
        store_heads(k_cache_ptr + HALF, slot, heads, offs, k2.to(dtype), stride_block, stride_slot, stride_head, ok,
                    PAGE)
        v_ptrs = v_ptr + tok * stride_v_tok + heads[:, None] * stride_v_head + offs[None, :]
        store_heads(v_cache_ptr, slot, heads, offs, tl.load(v_ptrs, mask=ok & (slot >= 0)), stride_block,
                    stride_slot, stride_head, ok, PAGE)
        store_heads(v_cache_ptr + HALF, slot, heads, offs, tl.load(v_ptrs + HALF, mask=ok & (slot >= 0)),
                    stride_block, stride_slot, stride_head, ok, PAGE)


def _launch(q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
            positions: torch.Tensor, cos_sin: torch.Tensor, eps: float,
            store: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``store``: (v, k_cache, v_cache, slot_mapping), or None for the norm and rotation alone."""
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    if q.stride(-1) != 1 or k.stride(-1) != 1 or head_dim & (head_dim - 1):
        raise ValueError("qk_norm_rope: q and k need a contiguous head_dim that is a power of two")
    if store is None:
        v, k_cache, v_cache, slot_mapping = k, k, k, positions  # never read: STORE_KV is off
        v_strides, cache_strides, page = (0, 0), (0, 0, 0), 1
    else:
        v, k_cache, v_cache, slot_mapping = store
        check_cache(k_cache, v_cache)
        if v.stride(-1) != 1:
            raise ValueError("qk_norm_rope_store_kv: v needs a contiguous head_dim")
        v_strides, cache_strides, page = v.stride()[:2], k_cache.stride()[:3], k_cache.shape[1]
    _qk_norm_rope_kernel[(num_tokens,)](
        q, k, v, q_weight, k_weight, positions, cos_sin, k_cache, v_cache, slot_mapping, eps, q.stride(0),
        q.stride(1), k.stride(0), k.stride(1), *v_strides, cos_sin.stride(0), *cache_strides,
        NUM_Q_HEADS=num_q_heads, NUM_KV_HEADS=num_kv_heads, Q_HEADS_PAD=triton.next_power_of_2(num_q_heads),
        KV_HEADS_PAD=triton.next_power_of_2(num_kv_heads), HALF=head_dim // 2, PAGE=page, STORE_KV=store is not None,
        num_warps=4)


def qk_norm_rope(q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 positions: torch.Tensor, cos_sin: torch.Tensor, eps: float) -> None:
    """``reference.qk_norm_rope`` in Triton (in place)."""
    _launch(q, k, q_weight, k_weight, positions, cos_sin, eps, None)


def qk_norm_rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_weight: torch.Tensor,
                          k_weight: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, eps: float,
                          k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """``reference.qk_norm_rope_store_kv`` in Triton: qk-norm + RoPE in place, then K and V into the cache."""
    _launch(q, k, q_weight, k_weight, positions, cos_sin, eps, (v, k_cache, v_cache, slot_mapping))
