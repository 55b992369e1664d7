"""The ``model`` group: the transformer whose latency is measured and simulated."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """Architecture of a decoder-only model; enough to build it offline and to describe it to Vidur.

    ``hf_id`` is tried with ``from_pretrained`` (local path or hub id) when ``weights`` allows it;
    otherwise the model is built from these fields with random weights, which times the same
    when decode lengths are forced.
    """

    name: str = MISSING
    hf_id: str = MISSING
    architecture: str = "qwen3"
    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_kv_heads: int = MISSING
    head_dim: int = MISSING
    intermediate_size: int = MISSING
    vocab_size: int = MISSING
    max_position_embeddings: int = MISSING
    rope_theta: float = MISSING
    tie_word_embeddings: bool = MISSING
    rms_norm_eps: float = MISSING
    dtype: str = "bfloat16"
    # auto: from_pretrained when the weights can be found offline, else random; pretrained: required; random: always.
    weights: str = "auto"
