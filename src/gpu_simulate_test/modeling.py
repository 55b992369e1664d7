"""Build the model a ``model`` config names, on the device a ``hardware`` config names.

The real path (``from_pretrained`` from a local path or the hub) stays; when the weights can't be
had offline, the same architecture is built from the config with random weights, which times the
same when decode lengths are forced. Which one happened is returned, for the run's meta.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError

log = logging.getLogger(__name__)

_ARCHITECTURES = {"qwen3": "Qwen3Config", "qwen2": "Qwen2Config", "llama": "LlamaConfig", "mistral": "MistralConfig"}
# Keywords a family's transformers config needs beyond the shared ones (MistralConfig defaults to a 4096-token window).
_EXTRA = {"mistral": {"sliding_window": None}, "qwen2": {"use_sliding_window": False}}
_DTYPES = ("float32", "bfloat16", "float16")
# backend.sdpa_kernels names -> torch.backends.cuda switches (process-wide, so every thread sees the same set)
SDPA_KERNELS = {"flash": "flash", "efficient": "mem_efficient", "cudnn": "cudnn", "math": "math"}


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    weights_source: str  # "pretrained:<id or path>" or "random"
    sdpa_kernels: list[str]  # the SDPA kernels left enabled (select_sdpa_kernels)


def torch_dtype(model: ModelConfig, hardware: HardwareConfig) -> Any:
    import torch

    name = hardware.dtype or model.dtype
    if name not in _DTYPES:
        raise InputError(f"dtype {name!r} is not one of {_DTYPES} (model.dtype / hardware.dtype)")
    return getattr(torch, name)


def resolve_device(hardware: HardwareConfig) -> Any:
    """The torch device, checked against the config: a GPU config on a machine without one fails here."""
    import torch

    if hardware.device == "cpu":
        return torch.device("cpu")
    if hardware.device != "cuda":
        raise InputError(f"hardware.device must be 'cuda' or 'cpu', not {hardware.device!r}")
    if not torch.cuda.is_available():
        raise EnvironmentUnavailableError(
            f"hardware={hardware.name} needs a CUDA GPU, but torch sees none here; run on the GPU machine or use hardware=cpu"
        )
    name = torch.cuda.get_device_name(0)
    if hardware.accelerator_match and hardware.accelerator_match.lower() not in name.lower():
        raise EnvironmentUnavailableError(
            f"hardware={hardware.name} expects a GPU whose name contains {hardware.accelerator_match!r}, "
            f"but this machine has {name!r}; pick the matching hardware config"
        )
    return torch.device("cuda", 0)


def device_sync(device: Any) -> Callable[[], None]:
    """A function that waits for the device's queued work, so that a host timestamp taken after it is real."""
    import torch

    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def hf_config(model: ModelConfig) -> Any:
    """The transformers config for this architecture, from our fields (no download)."""
    import transformers

    cls_name = _ARCHITECTURES.get(model.architecture)
    if cls_name is None:
        raise InputError(f"model.architecture {model.architecture!r} is not supported (known: {sorted(_ARCHITECTURES)})")
    cls = getattr(transformers, cls_name)
    return cls(
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_kv_heads,
        head_dim=model.head_dim,
        max_position_embeddings=model.max_position_embeddings,
        rope_theta=model.rope_theta,
        rms_norm_eps=model.rms_norm_eps,
        tie_word_embeddings=model.tie_word_embeddings,
        hidden_act=model.activation,
        **_EXTRA.get(model.architecture, {}),
    )


def select_sdpa_kernels(kernels: Optional[Sequence[str]]) -> list[str]:
    """Allow only ``kernels`` (None: all) for torch's scaled-dot-product attention; return the enabled set.

    Why it is a setting: on the H100 (torch 2.11) SDPA picks cuDNN attention, which builds an execution graph for
    every new (batch, query, KV) shape and caches it per thread. A dynamic KV cache meets a new KV length every
    decode step, so an engine thread pays ~2.5 ms per layer per unseen length (a Qwen3-0.6B decode step: ~110 ms
    instead of ~45 ms), and how much depends on what that thread ran before (``scripts/thread_diagnosis_h100.py``).
    """
    import torch

    names = list(SDPA_KERNELS) if kernels is None else list(kernels)
    unknown = sorted(set(names) - set(SDPA_KERNELS))
    if unknown or not names:
        raise InputError(f"backend.sdpa_kernels must be a non-empty list of {sorted(SDPA_KERNELS)} or null, not {kernels!r}")
    for name, switch in SDPA_KERNELS.items():
        getattr(torch.backends.cuda, f"enable_{switch}_sdp")(name in names)
    return [n for n in SDPA_KERNELS if getattr(torch.backends.cuda, f"{SDPA_KERNELS[n]}_sdp_enabled")()]


def load_model(model: ModelConfig, hardware: HardwareConfig, *, attn_implementation: str = "sdpa",
               sdpa_kernels: Optional[Sequence[str]] = None, seed: int = 0) -> LoadedModel:
    """``from_pretrained`` when allowed and available offline, else random weights from :func:`hf_config`."""
    import torch
    import transformers

    device = resolve_device(hardware)
    kernels = select_sdpa_kernels(sdpa_kernels)
    dtype = torch_dtype(model, hardware)
    if model.weights not in ("auto", "pretrained", "random"):
        raise InputError(f"model.weights must be auto, pretrained or random, not {model.weights!r}")
    if model.weights != "random":
        try:
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                model.hf_id, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True
            )
            return LoadedModel(hf.to(device).eval(), device, dtype, f"pretrained:{model.hf_id}", kernels)
        except (OSError, ValueError) as exc:
            if model.weights == "pretrained":
                raise EnvironmentUnavailableError(
                    f"model.weights=pretrained but {model.hf_id!r} could not be loaded offline ({exc}); "
                    "download it to a local path and set model.hf_id to it, or use model.weights=auto"
                ) from exc
            log.info("weights of %s not available offline; using random weights", model.hf_id)
    torch.manual_seed(seed)
    cfg = hf_config(model)
    cfg._attn_implementation = attn_implementation
    with torch.device(device):
        hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn_implementation)
    return LoadedModel(hf.eval(), device, dtype, "random", kernels)
