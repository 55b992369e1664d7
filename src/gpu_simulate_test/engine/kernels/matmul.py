"""``x @ W.T`` for a few rows of ``x`` (small decodes), in Triton: a weight-streaming matmul, optionally fused with
the op that makes its input.

At a few rows a projection is a read of its weight (4-13 MB a layer for Qwen3-0.6B) and little else, and every
kernel of a small step costs its launch and ramp (a few us) whatever its bytes. On the H200 (2026-12-02,
``bench_kernels.py --parts skinny sweep``) cuBLAS took 5.2 / 12.6 / 5.9 / 7.4 us for qkv / o / gate-up / down at one
row, this kernel 4.9 / 4.2 / 6.0 / 5.5; at 2-4 rows cuBLAS splits K for the narrow projections (o: 10.3 / 9.8 us at
2 / 4 rows, this kernel 4.8 / 5.9; down: 7.4, this kernel 6.4 at 2 rows, 7.7 at 4), and is as fast as any tile here
for the wide ones. So the engine takes this kernel at one row (``CUTOVER_ROWS``) and for the narrow projections
(n <= k) up to ``NARROW_ROWS``. Each program owns ``block_n`` output columns and reads their weight rows along K
``block_k`` at a time, all loads of a step issued together; the product is a broadcast multiply and a sum in
float32 (no tensor cores, no padding), or ``tl.dot`` with the rows padded to 16 (``skinny_plan``).

Fused forms, one kernel instead of two at one row (each program recomputes the cheap producer from its input,
which sits in L2; only the first program writes what else the producer returns):
- ``add_rms_norm_linear``: the residual add + RMSNorm (``norm.add_rms_norm``'s rounding) feeding a projection;
  the updated residual goes to a new tensor, never in place (other programs still read the old one).
- ``silu_and_mul_linear``: ``silu(gate) * up`` (``activation.silu_and_mul``'s rounding) feeding the down projection.
Above ``CUTOVER_ROWS`` both are the two kernels they replace: at 2-8 rows the fused forms measured slower than the
pair in every tile tried (add + norm into qkv 10.6-11.2 us against 6.8; silu * up into down 7.6 us at 2 rows, 58-80
at 4-8, against 8.8: studies/2026-12-02-native-h200-in-layer), as the norm's statistic is a chain of dependent
loads before the weights stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from gpu_simulate_test.engine.kernels import activation, norm

MAX_ROWS = 64  # the kernel's reach (rows padded to a power of two, >= 16 for tl.dot)
CUTOVER_ROWS = 1  # the engine's: every projection and the fused forms take this kernel up to this many rows
NARROW_ROWS = 4  # and the narrow projections (n <= k: o, down), unfused, up to this many


@dataclass(frozen=True)
class SkinnyTile:
    """One launch: ``block_n`` output columns a program, ``block_k`` of K a step, ``dot``: tensor cores (rows
    padded to 16) or a broadcast multiply (rows padded to a power of two)."""

    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    dot: bool


def skinny_plan(rows: int, n: int, k: int, dtype: torch.dtype = torch.bfloat16) -> SkinnyTile:
    """The tile measured best on the H200 (``bench_kernels.py --parts skinny sweep``, 2026-12-02) for Qwen3-0.6B's
    projections: at one row a broadcast multiply with 8 columns a program and all of K = 1024 a step, and so at two
    rows of the narrow projections (o, down: n <= k, where cuBLAS splits K); otherwise ``tl.dot`` tiles (rows padded
    to 16): 16 columns by 512 of K for the narrow ones at 3-8 rows, else 32 by 128. float32 (no tensor-core path
    here) always takes a broadcast tile, proportionally less K a step for more rows."""
    if dtype.itemsize >= 4:
        block_k = max(16, min(triton.next_power_of_2(k), 1024 // triton.next_power_of_2(rows)))
        return SkinnyTile(block_n=8, block_k=block_k, num_warps=4, num_stages=3, dot=False)
    if rows == 1 or (rows == 2 and n <= k):
        return SkinnyTile(block_n=8, block_k=min(1024, triton.next_power_of_2(k)), num_warps=4, num_stages=3,
                          dot=False)
    if rows <= 8 and n <= k:
        return SkinnyTile(block_n=16, block_k=512, num_warps=4, num_stages=3, dot=True)
    return SkinnyTile(block_n=32, block_k=128, num_warps=4, num_stages=4, dot=True)


@triton.jit
def _load_input(x_ptr, res_ptr, gate_up_ptr, offs_m, kk, m_ok, k_ok, stride_x, stride_res, n_act, inv_rms,
                norm_w_ptr, PRODUCER: tl.constexpr):
    """The input tile ``[rows, block_k]``: x itself, the RMSNorm of x + residual (``inv_rms``: its statistic), or
    ``silu(gate) * up`` of the fused gate-up row, each rounded as the kernel it replaces rounds."""
    mask = m_ok[:, None] & k_ok[None, :]
    if PRODUCER == 1:  # add + RMSNorm
        x = tl.load(x_ptr + offs_m[:, None] * stride_x + kk[None, :], mask=mask, other=0.0)
        r = tl.load(res_ptr + offs_m[:, None] * stride_res + kk[None, :], mask=mask, other=0.0)
        r = (r.to(tl.float32) + x.to(tl.float32)).to(x.dtype)
        h = (r.to(tl.float32) * inv_rms[:, None]).to(x.dtype)
        w = tl.load(norm_w_ptr + kk, mask=k_ok, other=0.0)
        return (h.to(tl.float32) * w.to(tl.float32)[None, :]).to(x.dtype)
    elif PRODUCER == 2:  # silu(gate) * up
        base = gate_up_ptr + offs_m[:, None] * stride_x + kk[None, :]
        gate = tl.load(base, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(base + n_act, mask=mask, other=0.0)
        act = (gate / (1.0 + tl.exp(-gate))).to(up.dtype)
        return (act.to(tl.float32) * up.to(tl.float32)).to(up.dtype)
    else:
        return tl.load(x_ptr + offs_m[:, None] * stride_x + kk[None, :], mask=mask, other=0.0)


@triton.jit(do_not_specialize=["rows"])
def _skinny_matmul_kernel(x_ptr, res_ptr, norm_w_ptr, res_out_ptr, w_ptr, y_ptr, rows, n, k, eps,
                          stride_x, stride_res, stride_w, stride_y,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr,
                          PRODUCER: tl.constexpr):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < rows
    n_ok = offs_n < n
    inv_rms = tl.zeros([BLOCK_M], tl.float32)
    if PRODUCER == 1:
        # the statistic of r = x + residual over the whole row (L2-resident: every program reads it); program 0
        # also writes r, the updated residual stream, to its own tensor
        sq = tl.zeros([BLOCK_M], tl.float32)
        for k0 in range(0, k, BLOCK_K):
            kk = k0 + offs_k
            mask = m_ok[:, None] & (kk < k)[None, :]
            x = tl.load(x_ptr + offs_m[:, None] * stride_x + kk[None, :], mask=mask, other=0.0)
            r = tl.load(res_ptr + offs_m[:, None] * stride_res + kk[None, :], mask=mask, other=0.0)
            r = (r.to(tl.float32) + x.to(tl.float32)).to(x.dtype)
            if tl.program_id(0) == 0:
                tl.store(res_out_ptr + offs_m[:, None] * stride_res + kk[None, :], r, mask=mask)
            rf = r.to(tl.float32)
            sq += tl.sum(rf * rf, axis=1)
        inv_rms = tl.rsqrt(sq / k + eps)
    w_ptrs = w_ptr + offs_n.to(tl.int64)[:, None] * stride_w + offs_k[None, :]
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, k, BLOCK_K):
        kk = k0 + offs_k
        k_ok = kk < k
        x = _load_input(x_ptr, res_ptr, x_ptr, offs_m, kk, m_ok, k_ok, stride_x, stride_res, k, inv_rms,
                        norm_w_ptr, PRODUCER)
        w = tl.load(w_ptrs, mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        if DOT:
            acc += tl.dot(x, tl.trans(w))
        else:
            acc += tl.sum(x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)
        w_ptrs += BLOCK_K
    tl.store(y_ptr + offs_m[:, None] * stride_y + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


def _launch(x: torch.Tensor, weight: torch.Tensor, k: int, tile: Optional[SkinnyTile], producer: int,
            residual: Optional[torch.Tensor] = None, norm_weight: Optional[torch.Tensor] = None, eps: float = 0.0
            ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    rows = x.shape[0]
    n = weight.shape[0]
    if rows > MAX_ROWS or weight.shape[1] != k or x.stride(-1) != 1 or weight.stride(-1) != 1:
        raise ValueError(f"skinny_matmul: x {tuple(x.shape)} and weight {tuple(weight.shape)} need at most "
                         f"{MAX_ROWS} rows, one K and contiguous rows")
    tile = tile or skinny_plan(rows, n, k, x.dtype)
    block_m = max(triton.next_power_of_2(rows), 16 if tile.dot else 1)
    y = torch.empty(rows, n, device=x.device, dtype=x.dtype)
    res_out = None
    res, res_stride = x, x.stride(0)
    if residual is not None:
        if residual.shape != x.shape or residual.stride(-1) != 1:
            raise ValueError("add_rms_norm_linear: the residual needs x's shape and contiguous rows")
        res_out = torch.empty_like(residual)
        res, res_stride = residual, residual.stride(0)
        if res_out.stride(0) != res_stride:
            raise ValueError("add_rms_norm_linear: the residual's rows must be packed")
    _skinny_matmul_kernel[(triton.cdiv(n, tile.block_n),)](
        x, res, x if norm_weight is None else norm_weight, x if res_out is None else res_out, weight, y, rows, n, k,
        eps, x.stride(0), res_stride, weight.stride(0), y.stride(0), BLOCK_M=block_m, BLOCK_N=tile.block_n,
        BLOCK_K=tile.block_k, DOT=tile.dot, PRODUCER=producer, num_warps=tile.num_warps, num_stages=tile.num_stages)
    return y, res_out


def skinny_matmul(x: torch.Tensor, weight: torch.Tensor, tile: Optional[SkinnyTile] = None) -> torch.Tensor:
    """``F.linear(x, weight)`` (no bias) for ``x`` of at most ``MAX_ROWS`` rows, ``[rows, k] -> [rows, n]``."""
    return _launch(x, weight, x.shape[1], tile, 0)[0]


def skinny_add_rms_norm_matmul(x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                               weight: torch.Tensor, tile: Optional[SkinnyTile] = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``reference.add_rms_norm_linear`` in one kernel; the new residual is a new tensor (``residual`` unchanged)."""
    y, res_out = _launch(x, weight, x.shape[1], tile, 1, residual, norm_weight, eps)
    return y, res_out


def skinny_silu_and_mul_matmul(gate_up: torch.Tensor, weight: torch.Tensor,
                               tile: Optional[SkinnyTile] = None) -> torch.Tensor:
    """``reference.silu_and_mul_linear`` in one kernel (``gate_up``: ``[rows, 2 * I]``, gate first)."""
    return _launch(gate_up, weight, gate_up.shape[1] // 2, tile, 2)[0]


def fuses(x: torch.Tensor) -> bool:
    """Whether the engine's projections of ``x`` take this kernel's fused forms (and this kernel), not cuBLAS."""
    return x.is_cuda and x.dim() == 2 and x.shape[0] <= CUTOVER_ROWS and x.dtype.itemsize == 2


def takes_skinny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the engine's projection of ``x`` by ``weight`` takes this kernel: where it fuses, and for a narrow
    projection up to ``NARROW_ROWS`` rows."""
    return fuses(x) or (x.is_cuda and x.dim() == 2 and x.shape[0] <= NARROW_ROWS and x.dtype.itemsize == 2
                        and weight.shape[0] <= weight.shape[1])


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The engine's projection on the GPU: ``skinny_matmul`` where ``takes_skinny`` (16-bit dtypes), cuBLAS
    (``F.linear``) otherwise (more rows; float32, whose tensor-core products would be tf32)."""
    return skinny_matmul(x, weight) if takes_skinny(x, weight) else F.linear(x, weight)


def add_rms_norm_linear(x: torch.Tensor, residual: torch.Tensor, norm_weight: torch.Tensor, eps: float,
                        weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``reference.add_rms_norm_linear`` on the GPU: one kernel where ``fuses`` (the new residual is then a new
    tensor), else ``norm.add_rms_norm`` (in place) and ``linear``."""
    if fuses(x):
        return skinny_add_rms_norm_matmul(x, residual, norm_weight, eps, weight)
    h, residual = norm.add_rms_norm(x, residual, norm_weight, eps)
    return linear(h, weight), residual


def silu_and_mul_linear(gate_up: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``reference.silu_and_mul_linear`` on the GPU: one kernel where ``fuses``, else the two."""
    if fuses(gate_up):
        return skinny_silu_and_mul_matmul(gate_up, weight)
    return linear(activation.silu_and_mul(gate_up), weight)
