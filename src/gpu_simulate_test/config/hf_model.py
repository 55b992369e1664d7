"""A ``model`` config from a Hugging Face ``config.json``: ``model=hf model.config_path=<file, folder or hub id>``.

``configs/model/hf.yaml`` fills every :class:`~gpu_simulate_test.config.model.ModelConfig` field with the ``hf``
resolver (``name: ${hf:name}``), so a field given on the command line still wins and the resolved values are what
every meta records. Only dense decoders are accepted (:data:`~gpu_simulate_test.config.model.ARCHITECTURES`);
a mixture of experts, attention over a sliding window, or an encoder-decoder is refused with one line naming the
field that shows it. Nothing is downloaded: a hub id is read from the local Hugging Face cache.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from gpu_simulate_test.config.model import ACTIVATIONS, ARCHITECTURES
from gpu_simulate_test.errors import InputError

CONFIG_FILE = "config.json"
RESOLVER = "hf"
# Fields whose presence (with a non-zero value) makes a model a mixture of experts.
MOE_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size", "num_experts_per_tok")
_DTYPES = ("float32", "bfloat16", "float16")
_OPTIONAL = ("ordinary_id_range",)  # ModelConfig fields that may be None


def locate(source: str) -> tuple[Path, str]:
    """``(config.json path, hf_id)``: a file, a folder holding one, or a hub id already in the local cache."""
    path = Path(source).expanduser()
    if path.is_file():
        return path, str(path.parent)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise InputError(f"model.config_path={source}: the folder has no {CONFIG_FILE}")
        return path / CONFIG_FILE, str(path)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, CONFIG_FILE)
    except ValueError:  # neither a path nor a valid hub id
        cached = None
    if not isinstance(cached, str):
        raise InputError(
            f"model.config_path={source}: no such file or folder, and not a hub id in the local Hugging Face cache "
            f"(nothing is downloaded); give a local {CONFIG_FILE}, or fetch it first "
            f"(`huggingface-cli download {source} {CONFIG_FILE}`)"
        )
    return Path(cached), source


def _refuse(source: str, field: str, value: Any, why: str) -> InputError:
    return InputError(f"model.config_path={source}: {field}={value!r}: {why}; only dense decoders "
                      f"({', '.join(ARCHITECTURES)}) can be simulated")


def _check_dense_decoder(source: str, cfg: dict[str, Any]) -> str:
    """The model's architecture, or the refusal naming the field that shows it is not a dense decoder."""
    if cfg.get("is_encoder_decoder"):
        raise _refuse(source, "is_encoder_decoder", cfg["is_encoder_decoder"], "an encoder-decoder model")
    for key in MOE_FIELDS:
        if cfg.get(key):
            raise _refuse(source, key, cfg[key], "a mixture of experts, which Vidur 0.0.26 does not model")
    window = cfg.get("sliding_window")
    in_use = cfg.get("use_sliding_window", cfg.get("model_type") == "mistral")
    if window and in_use and int(window) < int(cfg.get("max_position_embeddings") or 0):
        raise _refuse(source, "sliding_window", window,
                      f"attention over a {window}-token window (context {cfg.get('max_position_embeddings')}), "
                      "which Vidur 0.0.26 does not model")
    arch = str(cfg.get("model_type"))
    if arch not in ARCHITECTURES:
        raise _refuse(source, "model_type", cfg.get("model_type"), "not a supported dense decoder")
    return arch


def _special_ids(cfg: dict[str, Any]) -> list[int]:
    out: list[int] = []
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = cfg.get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and v >= 0:
                out.append(v)
    return out


def ordinary_id_range(cfg: dict[str, Any]) -> list[int]:
    """``[first, end)`` of the plain vocabulary: special tokens sit at one end of it (Llama-2 and Mistral put
    ``<unk>``, ``<s>``, ``</s>`` at 0-2; Llama-3 and Qwen after their text tokens), so the range stops short of them."""
    vocab = int(cfg["vocab_size"])
    special = [i for i in _special_ids(cfg) if i < vocab]
    low = [i for i in special if i < vocab // 2]
    high = [i for i in special if i >= vocab // 2]
    return [max(low) + 1 if low else 0, min(high) if high else vocab]


def _name(source: str, config_file: Path) -> str:
    """Lower-case folder name (``.../Llama-2-7b-hf/config.json`` -> ``llama-2-7b-hf``) or last part of a hub id."""
    local = Path(source).expanduser().exists()
    base = config_file.parent.name if local else source.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._") or "hf-model"


def _rope_theta(cfg: dict[str, Any]) -> float:
    if "rope_theta" in cfg:
        return float(cfg["rope_theta"])
    params = cfg.get("rope_parameters")  # transformers 5 keeps it here
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return 10000.0  # the default of every supported family's transformers config


def _dtype(cfg: dict[str, Any]) -> str:
    value = cfg.get("torch_dtype", cfg.get("dtype"))
    return str(value) if value in _DTYPES else "bfloat16"


def model_fields(source: str) -> dict[str, Any]:
    """Every ModelConfig field (but ``weights``) that ``config.json`` gives, with the families' own defaults."""
    config_file, hf_id = locate(source)
    return _fields(str(config_file), config_file.stat().st_mtime_ns, source, hf_id)


@lru_cache(maxsize=16)
def _fields(config_file: str, mtime_ns: int, source: str, hf_id: str) -> dict[str, Any]:
    try:
        cfg = json.loads(Path(config_file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model.config_path={source}: {config_file} is not readable JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise InputError(f"model.config_path={source}: {config_file} must hold a JSON object")
    arch = _check_dense_decoder(source, cfg)
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "vocab_size", "max_position_embeddings") if not isinstance(cfg.get(k), int)]
    if missing:
        raise InputError(f"model.config_path={source}: {config_file} lacks the integer field(s) {missing}")
    activation = str(cfg.get("hidden_act", "silu"))
    if activation not in ACTIVATIONS:
        raise InputError(f"model.config_path={source}: hidden_act={activation!r} is not one of {list(ACTIVATIONS)}")
    heads = int(cfg["num_attention_heads"])
    return {
        "name": _name(source, Path(config_file)),
        "hf_id": hf_id,
        "architecture": arch,
        "hidden_size": int(cfg["hidden_size"]),
        "num_layers": int(cfg["num_hidden_layers"]),
        "num_attention_heads": heads,
        "num_kv_heads": int(cfg.get("num_key_value_heads") or heads),
        "head_dim": int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads),
        "intermediate_size": int(cfg["intermediate_size"]),
        "vocab_size": int(cfg["vocab_size"]),
        "max_position_embeddings": int(cfg["max_position_embeddings"]),
        "rope_theta": _rope_theta(cfg),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "rms_norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "activation": activation,
        "norm": "rms_norm",  # every supported family normalises with RMSNorm
        "ordinary_id_range": ordinary_id_range(cfg),
        "dtype": _dtype(cfg),
    }


def resolve(key: str, *, _parent_: Any) -> Any:
    """The ``hf`` resolver: field ``key`` of the config.json that the enclosing node's ``config_path`` names.

    Hydra resolves the optional fields once while it composes, before the command line sets ``config_path``:
    those are None until then.
    """
    source = _parent_.get("config_path")
    if not source:
        if key in _OPTIONAL:
            return None
        raise InputError("model=hf needs model.config_path=<config.json, its folder, or a hub id in the local cache>")
    fields = model_fields(str(source))
    if key not in fields:
        raise InputError(f"configs/model/hf.yaml: ${{{RESOLVER}:{key}}} names no field read from config.json")
    return fields[key]
