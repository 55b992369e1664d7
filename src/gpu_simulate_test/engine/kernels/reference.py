"""Plain-torch references of every kernel: the engine's ops on the CPU, and the yardstick of the Triton kernels.

Each computes what the Hugging Face Qwen3 modules compute, in the same order where that decides rounding
(RMSNorm in float32, cast back before the weight; RoPE with float32 cos/sin cast to the activations' dtype), so
that the engine on the CPU in float32 reproduces ``model.generate``'s greedy tokens.

Layouts (shared with the Triton kernels):
    activations   [T, ...] packed tokens of every sequence in the batch, in batch order
    q / k / v     [T, heads, head_dim]; the head_dim axis contiguous, any token stride (views into a fused qkv)
    k/v cache     [num_blocks, block_size, num_kv_heads, head_dim], one pair per layer
    slot_mapping  [T] int: block * block_size + offset where each token's K/V goes; < 0: skip (graph padding)
    cu_seqlens_q  [B + 1] int32: sequence b owns tokens cu_seqlens_q[b]:cu_seqlens_q[b + 1]
    seq_lens      [B] int32: context of sequence b after this step (cached before + its new tokens); 0: padding
    block_tables  [B, max_blocks] int32: the KV blocks of sequence b, in order
    cos_sin       [max_position, head_dim] float32: cos of the head_dim / 2 frequencies, then their sin
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * (x / rms(x))`` over the last axis, the statistics in float32."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``residual += x`` (in place), then ``(rms_norm(residual), residual)``: a decoder layer's add and norm."""
    residual.add_(x)
    return rms_norm(residual, weight, eps), residual


def rope_cos_sin(head_dim: int, max_position: int, theta: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``cos_sin`` table, computed as transformers computes its rotary embedding (float32)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / head_dim))
    freqs = torch.arange(max_position, device=device, dtype=torch.float)[:, None] * inv_freq[None, :]
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * torch.cat([cos, cos], dim=-1) + rotated * torch.cat([sin, sin], dim=-1)


def qk_norm_rope(q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 positions: torch.Tensor, cos_sin: torch.Tensor, eps: float) -> None:
    """In place: RMSNorm of every q and k head (Qwen3's qk-norm), then neox-style RoPE at ``positions``."""
    half = q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos, sin = cs[:, None, :half].to(q.dtype), cs[:, None, half:].to(q.dtype)
    q.copy_(_rope(rms_norm(q, q_weight, eps), cos, sin))
    k.copy_(_rope(rms_norm(k, k_weight, eps), cos, sin))


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Write each token's K and V into its slot of the paged cache; slots < 0 are skipped."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    block_size = k_cache.shape[1]
    blocks, offsets = slots // block_size, slots % block_size
    k_cache[blocks, offsets] = k[keep].to(k_cache.dtype)
    v_cache[blocks, offsets] = v[keep].to(v_cache.dtype)


def qk_norm_rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_weight: torch.Tensor,
                          k_weight: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor, eps: float,
                          k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """``qk_norm_rope`` then ``store_kv``: what the fused Triton kernel does in one launch."""
    qk_norm_rope(q, k, q_weight, k_weight, positions, cos_sin, eps)
    store_kv(k, v, k_cache, v_cache, slot_mapping)


def decode_work(cu_seqlens_q: torch.Tensor, seq_lens: torch.Tensor, block_tables: torch.Tensor,
                k_cache: torch.Tensor) -> None:
    """The kernel's decode work table (``attention.decode_work``): this loop needs none."""
    return None


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cu_seqlens_q: torch.Tensor,
                    seq_lens: torch.Tensor, block_tables: torch.Tensor, scale: float,
                    out: Optional[torch.Tensor] = None, work: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its whole cached context (the new tokens' K/V are
    already stored); ``work`` (how the kernel deals out its decode work) is not needed here. Query i of a sequence with ``n`` new tokens and context ``L`` sits at position ``L - n + i``
    and sees keys ``0 .. L - n + i``; GQA maps query head h to KV head ``h // (num_q_heads // num_kv_heads)``."""
    out = torch.empty_like(q) if out is None else out
    block_size, n_kv = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // n_kv
    cu = cu_seqlens_q.tolist()
    for b, length in enumerate(seq_lens.tolist()):
        lo, hi = cu[b], cu[b + 1]
        if hi == lo:
            continue
        if length == 0:
            out[lo:hi] = 0
            continue
        blocks = block_tables[b, : -(-length // block_size)].long()
        k = k_cache[blocks].reshape(-1, n_kv, k_cache.shape[-1])[:length].float().repeat_interleave(group, dim=1)
        v = v_cache[blocks].reshape(-1, n_kv, v_cache.shape[-1])[:length].float().repeat_interleave(group, dim=1)
        qb = q[lo:hi].float()
        scores = torch.einsum("qhd,khd->hqk", qb, k) * scale
        pos = length - (hi - lo) + torch.arange(hi - lo, device=q.device)
        scores.masked_fill_(torch.arange(length, device=q.device)[None, None, :] > pos[None, :, None], float("-inf"))
        out[lo:hi] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).to(out.dtype)
    return out


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` of a fused ``[T, 2 * I]`` gate-up projection (gate first)."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def add_rms_norm_linear(x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                        weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F.linear(h, weight), residual)`` with ``h, residual = add_rms_norm(x, residual, ...)``: a norm and the
    projection it feeds. Callers use the returned residual (the fused kernel returns a new tensor)."""
    h, residual = add_rms_norm(x, residual, norm_weight, eps)
    return F.linear(h, weight), residual


def silu_and_mul_linear(gate_up: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(silu_and_mul(gate_up), weight)``: the MLP's activation and down projection."""
    return F.linear(silu_and_mul(gate_up), weight)


def lm_head(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(h, weight)`` for the LM head's few rows, as ``weight @ h.T`` with at least two columns.

    Only the cost differs: on the CPU's BLAS, ``F.linear`` of a few rows over the head's 151,936 x 128 weight takes
    ~19 ms at one row, 31-54 ms at two or three and ~23 ms at four (measured on the 2-core VM), an unevenness no
    per-step term of Vidur's can follow (the CPU demo's simulated latencies came out 30-50% low), while the weight-
    major product takes 7-15 ms from two columns on (one column is the slow matrix-vector path: it gets a copy)."""
    rows = h.shape[0]
    cols = h.T if rows > 1 else torch.cat([h, h]).T
    return (weight @ cols)[:, :rows].T
