"""``model=hf model.config_path=<config.json>``: any dense decoder from its Hugging Face config, registered with
Vidur like the shipped configs; the shipped Llama-2-7B, Llama-3-8B, Mistral-7B and Qwen3-0.6B configs equal what it
reads from their published config.json; other architectures are refused with one line naming the field."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.config.model import ACTIVATIONS, ARCHITECTURES, NORMS
from gpu_simulate_test.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_configs"
SHIPPED = {"llama-2-7b": "Llama-2-7b-hf", "llama-3-8b": "Meta-Llama-3-8B", "mistral-7b": "Mistral-7B-v0.3",
           "qwen3-0.6b": "Qwen3-0.6B"}
# Where a model config comes from, not what the model is.
PROVENANCE = ("name", "hf_id", "config_path")


def _model(compose_app: Callable[..., Any], *overrides: str) -> Any:
    return compose_app("vidur_sim", ["workload_id=w", "profiling_root=b", *overrides]).model


@pytest.mark.parametrize("shipped, folder", sorted(SHIPPED.items()))
def test_shipped_config_equals_its_published_config_json(shipped: str, folder: str, compose_app) -> None:
    read = asdict(_model(compose_app, "model=hf", f"model.config_path={FIXTURES / folder / 'config.json'}"))
    ours = asdict(_model(compose_app, f"model={shipped}"))
    assert {k: v for k, v in read.items() if k not in PROVENANCE} == {k: v for k, v in ours.items() if k not in PROVENANCE}
    assert read["name"] == folder.lower() and read["hf_id"] == str(FIXTURES / folder)


def test_llama_2_7b_published_values(compose_app) -> None:
    m = _model(compose_app, "model=llama-2-7b")
    assert (m.hidden_size, m.num_layers, m.num_attention_heads, m.num_kv_heads, m.head_dim) == (4096, 32, 32, 32, 128)
    assert (m.intermediate_size, m.vocab_size, m.max_position_embeddings) == (11008, 32000, 4096)
    assert (m.rope_theta, m.rms_norm_eps, m.tie_word_embeddings, m.architecture) == (10000.0, 1e-5, False, "llama")


def test_a_folder_works_and_the_command_line_wins(compose_app) -> None:
    m = _model(compose_app, "model=hf", f"model.config_path={FIXTURES / 'Meta-Llama-3-8B'}", "model.name=l3",
               "model.max_position_embeddings=4096")
    assert (m.name, m.max_position_embeddings, m.num_kv_heads, m.rope_theta) == ("l3", 4096, 8, 500000.0)
    assert m.ordinary_id_range == [0, 128000]  # Llama-3's special tokens follow its text tokens


def _write(tmp_path: Path, base: str, **changes: Any) -> Path:
    cfg = {**json.loads((FIXTURES / base / "config.json").read_text()), **changes}
    path = tmp_path / "m" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("base, changes, message", [
    ("Mistral-7B-v0.3", {"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2},
     "num_local_experts=8: a mixture of experts"),
    ("Qwen3-0.6B", {"model_type": "qwen3_moe", "num_experts": 128}, "num_experts=128: a mixture of experts"),
    ("Mistral-7B-v0.3", {"sliding_window": 4096, "rope_theta": 10000.0, "vocab_size": 32000},  # Mistral-7B-v0.1
     "sliding_window=4096: attention over a 4096-token window"),
    ("Qwen3-0.6B", {"use_sliding_window": True, "sliding_window": 4096}, "sliding_window=4096"),
    ("Llama-2-7b-hf", {"model_type": "t5", "is_encoder_decoder": True}, "is_encoder_decoder=True: an encoder-decoder"),
    ("Llama-2-7b-hf", {"model_type": "gpt2"}, "model_type='gpt2': not a supported dense decoder"),
    ("Llama-2-7b-hf", {"hidden_act": "relu"}, "hidden_act='relu' is not one of"),
])
def test_other_architectures_are_refused_naming_the_field(tmp_path: Path, compose_app, base: str, changes: dict,
                                                          message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        _model(compose_app, "model=hf", f"model.config_path={_write(tmp_path, base, **changes)}")
    assert "\n" not in str(err.value)


def test_qwen_window_not_in_use_is_accepted(compose_app) -> None:
    # Qwen3's config.json carries sliding_window with use_sliding_window false: full attention, accepted.
    m = _model(compose_app, "model=hf", f"model.config_path={FIXTURES / 'Qwen3-0.6B'}")
    assert m.architecture == "qwen3" and m.ordinary_id_range == [0, 151643]


@pytest.mark.parametrize("overrides, message", [
    (["model=hf"], "model=hf needs model.config_path="),
    (["model=hf", "model.config_path=nobody/no-such-model"], "not a hub id in the local Hugging Face cache"),
])
def test_a_missing_config_is_one_clear_error(compose_app, overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        _model(compose_app, *overrides)


def test_every_name_has_a_vidur_and_a_transformers_mapping() -> None:
    from gpu_simulate_test.modeling import _ARCHITECTURES
    from gpu_simulate_test.vidur_ext.registration import ACTIVATION_TYPES, ARCHITECTURES as VIDUR, NORM_TYPES

    assert set(VIDUR) == set(ARCHITECTURES) == set(_ARCHITECTURES)
    assert set(ACTIVATION_TYPES) == set(ACTIVATIONS) and set(NORM_TYPES) == set(NORMS)


@pytest.mark.parametrize("shipped", sorted(SHIPPED))
def test_registered_with_vidur_like_the_qwen3_configs(shipped: str, compose_app) -> None:
    from vidur.types import ActivationType, NormType

    from gpu_simulate_test.vidur_ext.registration import build_replica_config

    cfg = compose_app("vidur_sim", ["workload_id=w", "profiling_root=b", f"model={shipped}", "hardware=h100"])
    m = cfg.model
    replica = build_replica_config(m, cfg.hardware)
    v = replica.model_config
    assert replica.model_name == f"gst/{shipped}"
    assert (v.num_layers, v.num_q_heads, v.num_kv_heads, v.embedding_dim, v.mlp_hidden_dim, v.vocab_size) == (
        m.num_layers, m.num_attention_heads, m.num_kv_heads, m.hidden_size, m.intermediate_size, m.vocab_size)
    assert (v.max_model_len, v.rope_theta, v.head_dim) == (m.max_position_embeddings, m.rope_theta, m.head_dim)
    assert v.activation == ActivationType.SILU and v.norm == NormType.RMS_NORM and v.use_gated_mlp
    assert v.use_qkv_bias is False


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_each_architecture_builds_and_runs_with_random_weights(arch: str, compose_app) -> None:
    """A two-layer miniature of each family builds from the config alone (no download) and runs one forward."""
    import torch

    from gpu_simulate_test.modeling import load_model

    base = {"llama": "llama-2-7b", "mistral": "mistral-7b", "qwen3": "qwen3-0.6b", "qwen2": "qwen3-0.6b"}[arch]
    cfg = compose_app("real_bench", [
        "workload_id=w", f"model={base}", f"model.architecture={arch}", "model.weights=random", "hardware=cpu",
        "model.hidden_size=64", "model.num_layers=2", "model.num_attention_heads=4", "model.num_kv_heads=2",
        "model.head_dim=16", "model.intermediate_size=128", "model.vocab_size=512", "model.dtype=float32"])
    loaded = load_model(cfg.model, cfg.hardware)
    assert loaded.weights_source == "random" and loaded.model.config.model_type == arch
    assert getattr(loaded.model.config, "sliding_window", None) is None
    with torch.no_grad():
        logits = loaded.model(torch.tensor([[5, 6, 7]])).logits
    assert logits.shape == (1, 3, 512)
