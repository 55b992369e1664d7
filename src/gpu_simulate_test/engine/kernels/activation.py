"""``silu(gate) * up`` of the fused gate-up projection in Triton, rounding where torch rounds (after the SiLU)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, n_cols, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < n_cols
    gate = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + n_cols + cols, mask=ok, other=0.0)
    act = (gate / (1.0 + tl.exp(-gate))).to(up.dtype)
    tl.store(out_ptr + row * stride_out + cols, (act.to(tl.float32) * up.to(tl.float32)).to(up.dtype), mask=ok)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``reference.silu_and_mul`` in Triton: ``[T, 2 * I]`` (gate first) to ``[T, I]``."""
    n_cols = x.shape[-1] // 2
    rows = x.reshape(-1, 2 * n_cols)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty(*x.shape[:-1], n_cols, device=x.device, dtype=x.dtype)
    out_rows = out.view(-1, n_cols)
    _silu_and_mul_kernel[(rows.shape[0], triton.cdiv(n_cols, BLOCK))](rows, out_rows, n_cols, rows.stride(0),
                                                                     out_rows.stride(0), BLOCK=BLOCK, num_warps=4)
    return out
