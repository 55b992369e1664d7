"""The engine's kernels. Each function runs the Triton kernel on a CUDA tensor and the plain-torch reference
(``reference.py``, which documents the layouts) on the CPU; both have the same signature."""

from gpu_simulate_test.engine.kernels.reference import (
    add_rms_norm,
    paged_attention,
    qk_norm_rope,
    rms_norm,
    rope_cos_sin,
    silu_and_mul,
    store_kv,
)

__all__ = ["add_rms_norm", "paged_attention", "qk_norm_rope", "rms_norm", "rope_cos_sin", "silu_and_mul", "store_kv"]
