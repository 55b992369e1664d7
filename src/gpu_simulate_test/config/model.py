"""The ``model`` group: the transformer whose latency is measured and simulated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from gpu_simulate_test.io.ids import NOT_IN_IDS

# Dense decoder-only families (Hugging Face ``model_type``) that Vidur can simulate and the engines can build.
ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
ACTIVATIONS = ("silu", "gelu")  # the MLP's activation (Hugging Face ``hidden_act``)
NORMS = ("rms_norm", "layer_norm")


@dataclass
class ModelConfig:
    """Architecture of a decoder-only model; enough to build it offline and to describe it to Vidur.

    ``hf_id`` is tried with ``from_pretrained`` (local path or hub id) when ``weights`` allows it;
    otherwise the model is built from these fields with random weights, which times the same
    when decode lengths are forced. ``model=hf model.config_path=<config.json>`` fills every field
    from a Hugging Face ``config.json`` (:mod:`gpu_simulate_test.config.hf_model`).
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
    activation: str = "silu"
    norm: str = "rms_norm"
    # [first, end): the plain vocabulary (no special or control tokens), from which length-only workloads draw
    # their prompt ids; null: [0, vocab_size). Not in bundle or point ids: it changes no timing.
    ordinary_id_range: Optional[List[int]] = field(default=None, metadata=NOT_IN_IDS)
    dtype: str = "bfloat16"
    # auto: from_pretrained when the weights can be found offline, else random; pretrained: required; random: always.
    weights: str = "auto"
    # The Hugging Face config.json (file, its folder, or a hub id in the local cache) the fields were read from;
    # not in ids: the fields it gave are.
    config_path: Optional[str] = field(default=None, metadata=NOT_IN_IDS)
