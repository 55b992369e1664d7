"""A Hugging Face model directory for engines that load a model only by path (sarathi-serve).

Such an engine reads ``config.json`` and a tokenizer from a directory. A local checkpoint (``model.hf_id``
as a path, or the offline Hugging Face cache) is used as it is; otherwise the directory is written from
the model config and the engine draws random weights itself (times the same when decode lengths are
forced). Random weights can emit any id below ``vocab_size``, beyond the real tokenizer's range, so that
case gets a word-level tokenizer with one token per id: token ids are handed to the engine, and only its
per-token detokenisation touches the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.modeling import hf_config

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ModelDir:
    path: Path
    pretrained: bool  # real weights at ``path``; else the engine must draw random ones
    weights_source: str  # pretrained:<id or path> | random
    tokenizer_source: str


def _local_checkpoint(hf_id: str) -> Optional[Path]:
    """``hf_id`` as a directory with a config and weights, or its offline cache entry; None when neither."""
    path = Path(hf_id).expanduser()
    if not (path / "config.json").is_file():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(hf_id, local_files_only=True))
        except (OSError, ValueError):
            return None
    has_weights = any(p.suffix in _WEIGHT_SUFFIXES for p in path.iterdir())
    return path if (path / "config.json").is_file() and has_weights else None


def _write_word_level_tokenizer(vocab_size: int, eos_token_id: Optional[int], dst: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"<{i}>": i for i in range(vocab_size)}, unk_token="<0>"))
    eos = None if eos_token_id is None else f"<{eos_token_id}>"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<0>", eos_token=eos).save_pretrained(dst)


def model_dir(model: ModelConfig, dtype: str, scratch: Path) -> ModelDir:
    """Where the engine loads ``model`` from, following ``model.weights`` like ``modeling.load_model``."""
    if model.weights not in ("auto", "pretrained", "random"):
        raise InputError(f"model.weights must be auto, pretrained or random, not {model.weights!r}")
    if model.weights != "random":
        local = _local_checkpoint(model.hf_id)
        if local is not None:
            return ModelDir(local, True, f"pretrained:{model.hf_id}", f"checkpoint:{local}")
        if model.weights == "pretrained":
            raise EnvironmentUnavailableError(
                f"model.weights=pretrained but {model.hf_id!r} is neither a local checkpoint directory nor in the offline "
                "Hugging Face cache; download it and set model.hf_id to its path, or use model.weights=auto"
            )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = hf_config(model)
    cfg.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[cfg.model_type]]
    cfg.dtype = dtype
    scratch.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(scratch)
    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else None
    _write_word_level_tokenizer(model.vocab_size, eos, scratch)
    return ModelDir(scratch, False, "random", f"word-level, one token per id ({model.vocab_size})")
