"""Which device a measurement runs on: ``cpu``, or one GPU named by its UUID (the name NVML and nvidia-smi use)."""

from __future__ import annotations

import re
from typing import Optional

from gpu_simulate_test.config.hardware import HardwareConfig

CPU = "cpu"


def gpu_uuid() -> Optional[str]:
    """``GPU-<uuid>`` of the GPU this process uses (torch's current device), or None without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    except Exception:  # noqa: BLE001 - a broken CUDA setup is the backend's to report, when it loads
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def measured_gpu(hardware: HardwareConfig) -> Optional[str]:
    """The UUID of the GPU a measurement on ``hardware`` runs on; None on the CPU (or without a GPU)."""
    return None if str(hardware.device) == CPU else gpu_uuid()


def device_key(hardware: HardwareConfig) -> str:
    """The lock name of ``hardware``'s device: ``cpu``, or the GPU's UUID (``cuda-unavailable`` without a GPU, so
    that the backend's own error about the missing GPU is the one the user sees)."""
    if str(hardware.device) == CPU:
        return CPU
    uuid = measured_gpu(hardware)
    return re.sub(r"[^A-Za-z0-9._-]", "_", uuid) if uuid else f"{hardware.device}-unavailable"
