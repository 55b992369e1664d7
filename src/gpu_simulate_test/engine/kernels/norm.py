"""RMSNorm and residual add + RMSNorm in Triton: one program per token row, statistics in float32, and the
transformers order (normalise in float32, cast to the input dtype, multiply by the weight)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, residual_ptr, weight_ptr, out_ptr, n_cols, eps, stride_x, stride_residual, stride_out,
                     BLOCK: tl.constexpr, ADD_RESIDUAL: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    ok = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0)
    if ADD_RESIDUAL:
        # the residual stream is rounded to its dtype before it is normalised, as ``residual.add_(x)`` does
        r_ptrs = residual_ptr + row * stride_residual + cols
        x = (tl.load(r_ptrs, mask=ok, other=0.0).to(tl.float32) + x.to(tl.float32)).to(residual_ptr.dtype.element_ty)
        tl.store(r_ptrs, x, mask=ok)
    h = x.to(tl.float32)
    h = (h * tl.rsqrt(tl.sum(h * h, axis=0) / n_cols + eps)).to(x.dtype)
    w = tl.load(weight_ptr + cols, mask=ok, other=0.0)
    tl.store(out_ptr + row * stride_out + cols, (h.to(tl.float32) * w.to(tl.float32)).to(out_ptr.dtype.element_ty),
             mask=ok)


def _launch(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float) -> torch.Tensor:
    n_cols = x.shape[-1]
    rows = x.reshape(-1, n_cols)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    res = rows if residual is None else residual.view(-1, n_cols)  # view: the update must land in ``residual``
    out = torch.empty(x.shape, device=x.device, dtype=torch.promote_types(weight.dtype, x.dtype))
    out_rows = out.view(-1, n_cols)
    block = triton.next_power_of_2(n_cols)
    _rms_norm_kernel[(rows.shape[0],)](rows, res, weight, out_rows, n_cols, eps, rows.stride(0), res.stride(0),
                                      out_rows.stride(0), BLOCK=block, ADD_RESIDUAL=residual is not None,
                                      num_warps=min(max(block // 256, 1), 8))
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``reference.rms_norm`` in Triton, over the last axis."""
    return _launch(x, None, weight, eps)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``reference.add_rms_norm`` in Triton: ``residual += x`` in place, then its norm, in one pass."""
    return _launch(x, residual, weight, eps), residual
