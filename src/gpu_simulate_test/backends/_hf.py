"""What both transformers backends share: EOS and padding ids."""

from __future__ import annotations

from typing import Any, Optional


def eos_token_ids(model: Any) -> Optional[int | list[int]]:
    """The model's EOS id(s) (used only with early stop)."""
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    return eos if eos is not None else getattr(model.config, "eos_token_id", None)


def pad_token_id(model: Any) -> int:
    eos = eos_token_ids(model)
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    pad = getattr(model.config, "pad_token_id", None)
    return int(pad if pad is not None else (eos if eos is not None else 0))
