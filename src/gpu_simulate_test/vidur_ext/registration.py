"""Describe this project's ``model`` and ``hardware`` configs to ``vidur==0.0.26``, at run time.

Vidur finds models, devices and nodes by scanning the subclasses of its config dataclasses
(``BaseModelConfig.create_from_name``, ``BaseDeviceSKUConfig.create_from_type_string``), and its
component registries (``BaseRegistry.register``) silently keep the FIRST implementation of a key.
So a name registered twice in one process would keep its first definition; here every generated
class answers to its name only while it is the active one, and registries are unregistered first.

Public functions:
    vidur_model_name(model: ModelConfig) -> str
        The name Vidur knows the model by (``gst/<model.name>``): ``ReplicaConfig.model_name`` and the
        ``model`` field of a profiling root's ``config.json``.
    register_model(model: ModelConfig) -> str
        Define (or redefine) the Vidur model config of ``model``; returns its Vidur name.
    register_hardware(hardware: HardwareConfig) -> tuple[str, str]
        Make ``hardware.vidur_device`` / ``hardware.vidur_node`` known to Vidur (its own SKUs are used as they
        are; others, e.g. ``cpu`` and ``h200``, are registered from ``fp16_tflops``/``memory_gib``);
        returns ``(device, network_device)`` for ``ReplicaConfig``.
    build_replica_config(model: ModelConfig, hardware: HardwareConfig) -> GstReplicaConfig
        Registers both and returns Vidur's ``ReplicaConfig`` for one TP=1, PP=1 replica, with the model's
        real ``head_dim`` (Vidur derives hidden/heads, which is 64 instead of 128 for Qwen3).
    replace_registration(registry, key, implementation) -> None
        Unregister-then-register in one of Vidur's ``BaseRegistry`` subclasses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional

from vidur.config import BaseDeviceSKUConfig, BaseModelConfig, BaseNodeSKUConfig, ReplicaConfig
from vidur.config.utils import get_all_subclasses
from vidur.types import ActivationType, NormType
from vidur.utils.base_registry import BaseRegistry

from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.errors import InputError

MODEL_PREFIX = "gst/"
_INACTIVE = "\x00gst-inactive"  # what a superseded class answers instead of its name: equals no real key

# (Vidur base class, key) -> the class that currently answers to the key.
_ACTIVE: dict[tuple[type, str], type] = {}


def _answer(cls: type, base: type, key: str) -> str:
    return key if _ACTIVE.get((base, key)) is cls else _INACTIVE


@dataclass
class GstModelConfig(BaseModelConfig):
    """Base of the generated model configs; ``head_dim`` is explicit because Qwen3's is not hidden/heads."""

    head_dim: Optional[int] = None

    @classmethod
    def get_name(cls) -> str:
        return _INACTIVE


@dataclass
class GstDeviceSKUConfig(BaseDeviceSKUConfig):
    """Base of devices Vidur lacks (``cpu``, ``h200``)."""

    @classmethod
    def get_type(cls) -> str:
        return _INACTIVE


@dataclass
class GstNodeSKUConfig(BaseNodeSKUConfig):
    """Base of nodes Vidur lacks; one device per node (runs are TP=1, PP=1)."""

    device_sku_type: str = ""

    @classmethod
    def get_type(cls) -> str:
        return _INACTIVE


# Architecture -> the Vidur model flags that the ``model`` config does not carry (all four are gated-MLP, bias-free
# decoders with rotary embeddings; Qwen2 alone has biases on q/k/v).
_DECODER = dict(use_gated_mlp=True, use_bias=False, use_qkv_bias=False, post_attn_norm=True, is_neox_style=True)
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen3": _DECODER,
    "qwen2": dict(_DECODER, use_qkv_bias=True),
    "llama": _DECODER,
    "mistral": _DECODER,
}
# ``model.activation`` / ``model.norm`` -> Vidur's enums.
ACTIVATION_TYPES = {"silu": ActivationType.SILU, "gelu": ActivationType.GELU}
NORM_TYPES = {"rms_norm": NormType.RMS_NORM, "layer_norm": NormType.LAYER_NORM}


def _class_name(prefix: str, key: str) -> str:
    return prefix + re.sub(r"\W", "_", key)


def _define(base: type, vidur_base: type, key: str, values: dict[str, Any], hook: str) -> type:
    """A dataclass subclass of ``base`` whose fields default to ``values`` and that answers to ``key``."""
    specs = [(f.name, f.type, field(default=values[f.name])) for f in fields(base) if f.name in values]
    cls = make_dataclass(_class_name(base.__name__ + "_", key), specs, bases=(base,))
    setattr(cls, hook, classmethod(lambda c: _answer(c, vidur_base, key)))
    _ACTIVE[(vidur_base, key)] = cls
    return cls


def vidur_model_name(model: ModelConfig) -> str:
    return f"{MODEL_PREFIX}{model.name}"


def register_model(model: ModelConfig) -> str:
    """Define the Vidur model config of ``model`` (replacing any earlier one of that name)."""
    arch = ARCHITECTURES.get(str(model.architecture))
    if arch is None:
        raise InputError(
            f"model {model.name}: architecture {model.architecture!r} has no Vidur mapping; "
            f"known: {sorted(ARCHITECTURES)} (add it to vidur_ext/registration.py ARCHITECTURES)"
        )
    for knob, value, known in (("activation", model.activation, ACTIVATION_TYPES), ("norm", model.norm, NORM_TYPES)):
        if value not in known:
            raise InputError(f"model {model.name}: {knob}={value!r} is not one of {sorted(known)}")
    name = vidur_model_name(model)
    values: dict[str, Any] = dict(
        arch,
        activation=ACTIVATION_TYPES[model.activation],
        norm=NORM_TYPES[model.norm],
        num_layers=int(model.num_layers),
        num_q_heads=int(model.num_attention_heads),
        num_kv_heads=int(model.num_kv_heads),
        embedding_dim=int(model.hidden_size),
        mlp_hidden_dim=int(model.intermediate_size),
        max_model_len=int(model.max_position_embeddings),
        vocab_size=int(model.vocab_size),
        rope_theta=float(model.rope_theta),
        rope_scaling=None,
        partial_rotary_factor=1.0,
        no_tensor_parallel=False,
        head_dim=int(model.head_dim),
    )
    cls = _define(GstModelConfig, BaseModelConfig, name, values, "get_name")
    found = BaseModelConfig.create_from_name(name)
    if type(found) is not cls:
        raise InputError(f"model {model.name}: Vidur already defines a model named {name!r}; rename the model config")
    return name


def _vidur_knows(base: type, key: str) -> bool:
    """Vidur's own SKU of that name (our generated classes excluded)."""
    return any(
        not issubclass(sub, (GstDeviceSKUConfig, GstNodeSKUConfig)) and str(sub.get_type()) == key
        for sub in get_all_subclasses(base)
    )


def register_hardware(hardware: HardwareConfig) -> tuple[str, str]:
    """Make the hardware's device and node known to Vidur; returns ``(device, network_device)``."""
    device, node = str(hardware.vidur_device), str(hardware.vidur_node)
    if not _vidur_knows(BaseDeviceSKUConfig, device):
        _define(GstDeviceSKUConfig, BaseDeviceSKUConfig, device,
                dict(fp16_tflops=float(hardware.fp16_tflops), total_memory_gb=float(hardware.memory_gib)), "get_type")
    if not _vidur_knows(BaseNodeSKUConfig, node):
        _define(GstNodeSKUConfig, BaseNodeSKUConfig, node, dict(num_devices_per_node=1, device_sku_type=device), "get_type")
    return device, node


@dataclass
class GstReplicaConfig(ReplicaConfig):
    """Vidur's replica config with the model's real ``head_dim`` (KV bytes, memory and KV blocks depend on it)."""

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except AssertionError as exc:
            raise InputError(
                f"Vidur 0.0.26 rejects model {self.model_name} with TP={self.tensor_parallel_size}, "
                f"PP={self.num_pipeline_stages}: heads, layers and hidden size must divide evenly"
            ) from exc
        head_dim = getattr(self.model_config, "head_dim", None)
        if head_dim:
            self._attention_head_dim = int(head_dim)


def build_replica_config(model: ModelConfig, hardware: HardwareConfig) -> GstReplicaConfig:
    """One TP=1, PP=1 replica of ``model`` on ``hardware`` (Vidur's defaults are TP8/PP2 and Llama-3-8B)."""
    name = register_model(model)
    device, node = register_hardware(hardware)
    return GstReplicaConfig(
        model_name=name,
        num_pipeline_stages=1,
        tensor_parallel_size=1,
        kv_parallel_size=1,
        enable_sequence_pipeline_parallel=False,
        device=device,
        network_device=node,
    )


def replace_registration(registry: type[BaseRegistry], key: Any, implementation: type) -> None:
    """Vidur's ``register`` ignores a key it already holds: unregister it first."""
    try:
        if registry.get_class(key) is implementation:
            return
        registry.unregister(key)
    except ValueError:
        pass  # not registered yet
    registry.register(key, implementation)
