"""The engine's one config: the model's shape and every knob, each under the name it has in ``configs/backend``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

POLICIES = ("sarathi", "vllm")


@dataclass(frozen=True)
class ModelShape:
    """A dense Qwen3-style decoder (qk-norm, GQA, neox RoPE, RMSNorm, SiLU-gated MLP, tied or untied head)."""

    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V one token occupies across all layers, per byte of element size (multiply by it)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs; resolved limits only (no "null means ..." here: the caller resolved them).

    ``max_batch_tokens``: tokens one iteration may hold (sarathi: its chunk budget; vllm: its token cap).
    ``max_requests_per_batch``: the batch cap. ``num_blocks``: KV blocks of ``block_size`` tokens; None sizes the
    pool from ``gpu_memory_utilization`` of the device's memory after the weights and a peak activation (as vLLM
    does). ``cuda_graph_batch_sizes``: the sequence buckets B of the CUDA graphs captured at start-up (empty: always
    eager); ``cuda_graph_token_sizes``: the token buckets T of the graphs of steps with a prefill chunk (empty: those
    run eagerly). Buckets and padding: ``runner.py``.
    """

    model: ModelShape
    policy: str = "sarathi"
    max_batch_tokens: int = 512
    max_requests_per_batch: int = 128
    block_size: int = 16
    num_blocks: Optional[int] = None
    gpu_memory_utilization: float = 0.9
    watermark_blocks_fraction: float = 0.01
    dtype: str = "bfloat16"  # float32 | bfloat16 | float16
    device: str = "cuda"  # cuda | cpu (cpu: the plain-torch reference ops, no graphs)
    cuda_graph_batch_sizes: tuple[int, ...] = field(default_factory=lambda: (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128))
    cuda_graph_token_sizes: tuple[int, ...] = field(default_factory=lambda: (16, 32, 64, 128, 256, 512))
    seed: int = 0
