"""Per-layer operator timings, from the real model's own modules (layer 0 of the model ``load_model``
built, in the backend's dtype and attention implementation), in Vidur's ``mlp.csv``/``attention.csv`` rows.
The native engine's own ops take the same path through ``engine_ops.EngineLayerOps``."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np

from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_call

OpSamples = dict[str, np.ndarray]  # op name -> per-call ms samples
# How the native engine's ops are timed (``engine_ops``; part of a native bundle's id: one timed otherwise is not
# reused)
OPERATOR_TIMING = "token ops in their layer (the layer's graph with and without each), attention alone"


class Measured(Protocol):
    """An op that times itself (the native engine's ops, each in its layer: ``engine_ops.InLayer``)."""

    def measure(self, sync: Callable[[], None], method: TimingMethod) -> np.ndarray: ...


# None: the engine fuses the op into another, so it costs nothing of its own
Op = Optional[Callable[[], Any] | Measured]


class OperatorSource(Protocol):
    """What the profiler times: one layer's ops as closures over inputs of a shape (``LayerOps``, ``EngineLayerOps``)."""

    device: Any
    attention_backend: str  # attention.csv's attention_backend column

    def token_ops(self, n: int) -> dict[str, Op]: ...

    def prefill(self, chunk: int, kv: int) -> Callable[[], Any]: ...

    def decode(self, batch: int, kv: int) -> Callable[[], Any]: ...

    def kv_cache_save(self, n: int, capacity: int) -> Op: ...


class LayerOps:
    """Closures over one decoder layer's modules that run each of Vidur's operators on given inputs."""

    def __init__(self, model: Any, attn_implementation: str) -> None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.qwen3 import modeling_qwen3

        self.model = model
        self.layer = model.model.layers[0]
        self.attn = self.layer.self_attn
        self.cfg = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.apply_rope = modeling_qwen3.apply_rotary_pos_emb
        self.attention_fn = ALL_ATTENTION_FUNCTIONS.get_interface(attn_implementation, modeling_qwen3.eager_attention_forward)
        self.head_dim = self.attn.head_dim
        self.n_q = self.cfg.num_attention_heads
        self.n_kv = self.cfg.num_key_value_heads
        self.attention_backend = attn_implementation

    def _rand(self, *shape: int) -> Any:
        import torch

        return torch.randn(*shape, device=self.device, dtype=self.dtype)

    def token_ops(self, n: int) -> dict[str, Callable[[], Any]]:
        """Vidur's num_tokens-indexed operators, each as the layer computes it for ``n`` tokens."""
        import torch

        a, mlp, d = self.attn, self.layer.mlp, self.head_dim
        x = self._rand(1, n, self.cfg.hidden_size)
        hidden_shape = (1, n, -1, d)
        pos = torch.arange(n, device=self.device).unsqueeze(0)
        cos, sin = self.model.model.rotary_emb(x, pos)
        q = self._rand(1, self.n_q, n, d)
        k = self._rand(1, self.n_kv, n, d)
        o_in = self._rand(1, n, self.n_q * d)
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        act = mlp.act_fn(gate) * up

        def pre_proj() -> Any:
            return (a.q_norm(a.q_proj(x).view(hidden_shape)).transpose(1, 2),
                    a.k_norm(a.k_proj(x).view(hidden_shape)).transpose(1, 2),
                    a.v_proj(x).view(hidden_shape).transpose(1, 2))

        return {
            "input_layernorm": lambda: self.layer.input_layernorm(x),
            "attn_pre_proj": pre_proj,
            "attn_rope": lambda: self.apply_rope(q, k, cos, sin),
            "attn_post_proj": lambda: a.o_proj(o_in.reshape(1, n, -1).contiguous()),
            "post_attention_layernorm": lambda: self.layer.post_attention_layernorm(x),
            "mlp_up_proj": lambda: (mlp.gate_proj(x), mlp.up_proj(x)),
            "mlp_act": lambda: mlp.act_fn(gate) * up,
            "mlp_down_proj": lambda: mlp.down_proj(act),
            "add": lambda: x + x,
        }

    def _attend(self, q: Any, k: Any, v: Any, mask: Any) -> Callable[[], Any]:
        return lambda: self.attention_fn(self.attn, q, k, v, mask, dropout=0.0, scaling=self.attn.scaling)

    def prefill(self, chunk: int, kv: int) -> Callable[[], Any]:
        """One request's chunk attending to ``kv`` cached tokens plus itself (causal)."""
        import torch

        q = self._rand(1, self.n_q, chunk, self.head_dim)
        k, v = (self._rand(1, self.n_kv, kv + chunk, self.head_dim) for _ in range(2))
        mask = None
        if kv:
            allowed = torch.arange(kv + chunk, device=self.device)[None, :] <= (kv + torch.arange(chunk, device=self.device))[:, None]
            mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill(~allowed, torch.finfo(self.dtype).min)[None, None]
        return self._attend(q, k, v, mask)

    def decode(self, batch: int, kv: int) -> Callable[[], Any]:
        """``batch`` single-token queries, each over its own ``kv + 1`` keys."""
        q = self._rand(batch, self.n_q, 1, self.head_dim)
        k, v = (self._rand(batch, self.n_kv, kv + 1, self.head_dim) for _ in range(2))
        return self._attend(q, k, v, None)

    def kv_cache_save(self, n: int, capacity: int) -> Callable[[], Any]:
        """Writing ``n`` new tokens' keys and values into a preallocated cache."""
        cache_k, cache_v = (self._rand(1, self.n_kv, capacity, self.head_dim) for _ in range(2))
        k, v = (self._rand(1, self.n_kv, n, self.head_dim) for _ in range(2))

        def save() -> None:
            cache_k[:, :, :n].copy_(k)
            cache_v[:, :, :n].copy_(v)

        return save


def _time(fn: Op, sync: Callable[[], None], method: TimingMethod) -> np.ndarray:
    """:func:`time_call` per call of the op (an op whose one run calls it several times says so in
    ``calls_per_run``: the native engine's graphs over its layers; an op that times itself says how), or zeros for
    an op fused into another (its cost is measured there)."""
    if fn is None:
        return np.zeros(method.repeat_iters)
    if hasattr(fn, "measure"):
        return fn.measure(sync, method)
    return time_call(fn, sync, method) / getattr(fn, "calls_per_run", 1)


def time_token_ops(ops: OperatorSource, points: list[int], method: TimingMethod,
                   sync: Callable[[], None]) -> Iterator[tuple[int, OpSamples]]:
    import torch

    with torch.inference_mode():
        for n in points:
            yield n, {name: _time(fn, sync, method) for name, fn in ops.token_ops(n).items()}


def time_outside_layers(ops: Any, points: list[tuple[int, int]], method: TimingMethod,
                        sync: Callable[[], None]) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields ``(tokens, rows, per-step ms)``: a step's work outside its layers (``EngineLayerOps.outside_layers``)
    at each ``(tokens, rows)`` of ``points``."""
    import torch

    with torch.inference_mode():
        for n, rows in points:
            yield n, rows, _time(ops.outside_layers(n, rows), sync, method)


def time_attention(ops: OperatorSource, prefill: list[tuple[int, int]], decode: list[tuple[int, int]],
                   method: TimingMethod, sync: Callable[[], None]) -> Iterator[tuple[str, int, int, OpSamples]]:
    """Yields ``(kind, a, kv, samples)``: kind prefill (a = chunk) or decode (a = batch)."""
    import torch

    with torch.inference_mode():
        for chunk, kv in prefill:
            yield "prefill", chunk, kv, {"attn_prefill": _time(ops.prefill(chunk, kv), sync, method),
                                         "attn_kv_cache_save": _time(ops.kv_cache_save(chunk, chunk), sync, method)}
        for batch, kv in decode:
            yield "decode", batch, kv, {"attn_decode": _time(ops.decode(batch, kv), sync, method),
                                        "attn_kv_cache_save": _time(ops.kv_cache_save(batch, batch), sync, method)}
