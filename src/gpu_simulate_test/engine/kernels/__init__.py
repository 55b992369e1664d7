"""The engine's kernels. Each function runs the Triton kernel on a CUDA tensor and the plain-torch reference
(``reference.py``, which documents the layouts) on the CPU; both have the same signature.

``kernel_path(device)`` names the path a device takes (the engine records it in its stats).
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
import torch.nn.functional as torch_F

from gpu_simulate_test.engine.kernels import activation, attention, cache, matmul, norm, reference, rope
from gpu_simulate_test.engine.kernels.reference import rope_cos_sin

F = TypeVar("F", bound=Callable)


def _dispatch(fast: Callable, slow: F) -> F:
    """``fast`` when the first argument lives on a CUDA device, else ``slow``; documented as ``slow``."""

    @functools.wraps(slow)
    def run(first: torch.Tensor, *args, **kwargs):
        return (fast if first.is_cuda else slow)(first, *args, **kwargs)

    return run  # type: ignore[return-value]


rms_norm = _dispatch(norm.rms_norm, reference.rms_norm)
add_rms_norm = _dispatch(norm.add_rms_norm, reference.add_rms_norm)
qk_norm_rope = _dispatch(rope.qk_norm_rope, reference.qk_norm_rope)
qk_norm_rope_store_kv = _dispatch(rope.qk_norm_rope_store_kv, reference.qk_norm_rope_store_kv)
store_kv = _dispatch(cache.store_kv, reference.store_kv)
paged_attention = _dispatch(attention.paged_attention, reference.paged_attention)
decode_work = _dispatch(attention.decode_work, reference.decode_work)
silu_and_mul = _dispatch(activation.silu_and_mul, reference.silu_and_mul)
linear = _dispatch(matmul.linear, torch_F.linear)
lm_head = _dispatch(torch_F.linear, reference.lm_head)  # cuBLAS on the GPU (77-87 us at 1-64 rows on the H200)
add_rms_norm_linear = _dispatch(matmul.add_rms_norm_linear, reference.add_rms_norm_linear)
silu_and_mul_linear = _dispatch(matmul.silu_and_mul_linear, reference.silu_and_mul_linear)
fuses_projection_input = matmul.fuses  # False on the CPU: the references never fuse


def kernel_path(device: torch.device | str) -> str:
    """``triton`` on a CUDA device, ``reference`` elsewhere: what the functions above run there."""
    return "triton" if torch.device(device).type == "cuda" else "reference"


__all__ = ["add_rms_norm", "add_rms_norm_linear", "decode_work", "fuses_projection_input", "kernel_path", "linear", "lm_head",
           "paged_attention", "qk_norm_rope", "qk_norm_rope_store_kv", "rms_norm", "rope_cos_sin", "silu_and_mul",
           "silu_and_mul_linear", "store_kv"]
