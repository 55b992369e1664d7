"""What both transformers backends share: loading, the device sync behind every token time, EOS handling."""

from __future__ import annotations

from typing import Any, Callable, Optional

from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.modeling import LoadedModel, load_model


def load(model: ModelConfig, hardware: HardwareConfig, attn_implementation: str, seed: int) -> LoadedModel:
    return load_model(model, hardware, attn_implementation=attn_implementation, seed=seed)


def device_sync(device: Any) -> Callable[[], None]:
    """A function that waits for the device's queued work, so a host timestamp after it is real."""
    import torch

    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


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
