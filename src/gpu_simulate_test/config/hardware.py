"""The ``hardware`` group: where the real engine runs and which device Vidur models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class HardwareConfig:
    """One accelerator (or the CPU). Nothing else in the code names a GPU.

    ``accelerator_match`` is a substring that ``torch.cuda.get_device_name()`` must contain, so a run
    configured for an H100 fails clearly on anything else. ``vidur_device``/``vidur_node`` name Vidur's
    device and node SKUs; ones Vidur lacks are registered at run time from ``fp16_tflops``/``memory_gib``.
    """

    name: str = MISSING
    device: str = "cuda"
    accelerator_match: Optional[str] = None
    memory_gib: float = MISSING
    fp16_tflops: float = MISSING
    vidur_device: str = MISSING
    vidur_node: str = MISSING
    # Overrides the model's dtype on this hardware (e.g. float32 on the CPU); null keeps the model's.
    dtype: Optional[str] = None
