"""The KV store in Triton: each token's K and V heads into their slot of the paged cache (slot < 0: skipped)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def store_heads(cache_ptr, slot, heads, offs_d, vals, stride_block, stride_slot, stride_head, mask,
                PAGE: tl.constexpr):
    """Write ``vals`` ([heads, head_dim]) at ``slot``; the block index widened so huge pools cannot overflow."""
    base = (slot // PAGE).to(tl.int64) * stride_block + (slot % PAGE) * stride_slot
    tl.store(cache_ptr + base + heads[:, None] * stride_head + offs_d[None, :], vals.to(cache_ptr.dtype.element_ty),
             mask=mask & (slot >= 0))


@triton.jit
def _store_kv_kernel(k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_k_tok, stride_k_head, stride_v_tok,
                     stride_v_head, stride_block, stride_slot, stride_head,
                     NUM_KV_HEADS: tl.constexpr, HEADS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr):
    tok = tl.program_id(0)
    slot = tl.load(slot_ptr + tok)
    heads = tl.arange(0, HEADS_PAD)
    offs_d = tl.arange(0, HEAD_DIM)
    ok = (heads < NUM_KV_HEADS)[:, None] & (slot >= 0)
    k = tl.load(k_ptr + tok * stride_k_tok + heads[:, None] * stride_k_head + offs_d[None, :], mask=ok)
    v = tl.load(v_ptr + tok * stride_v_tok + heads[:, None] * stride_v_head + offs_d[None, :], mask=ok)
    store_heads(k_cache_ptr, slot, heads, offs_d, k, stride_block, stride_slot, stride_head, ok, PAGE)
    store_heads(v_cache_ptr, slot, heads, offs_d, v, stride_block, stride_slot, stride_head, ok, PAGE)


def check_cache(k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    """The kernels address K and V with one set of strides and a contiguous head_dim."""
    if k_cache.stride() != v_cache.stride() or k_cache.stride(-1) != 1:
        raise ValueError("K and V caches need one layout with head_dim contiguous")


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """``reference.store_kv`` in Triton."""
    check_cache(k_cache, v_cache)
    num_tokens, num_kv_heads, head_dim = k.shape
    _store_kv_kernel[(num_tokens,)](
        k, v, k_cache, v_cache, slot_mapping, k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(0),
        k_cache.stride(1), k_cache.stride(2), NUM_KV_HEADS=num_kv_heads,
        HEADS_PAD=triton.next_power_of_2(num_kv_heads), HEAD_DIM=head_dim, PAGE=k_cache.shape[1], num_warps=4)
