"""The dense Qwen3 decoder over packed tokens and the paged KV cache, built from a transformers state dict.

The same function as transformers' ``Qwen3ForCausalLM`` (qk-norm, GQA, neox RoPE, RMSNorm, SiLU-gated MLP, tied or
untied head), written as the serving engines write it: the q/k/v and gate/up projections fused into one matmul each,
the residual add fused into the next norm, every sequence's tokens packed into one ``[T, hidden]`` tensor, and the
LM head run only on the tokens that sample. Each op is one call of ``engine.kernels`` (Triton on CUDA, the plain-torch
references on the CPU), so that the step a CUDA graph captures is exactly the list of calls below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from gpu_simulate_test.engine import kernels
from gpu_simulate_test.engine.config import ModelShape
from gpu_simulate_test.errors import InputError


@dataclass
class AttentionInputs:
    """What the attention of one step reads besides q/k/v (layouts: ``kernels/reference.py``)."""

    slot_mapping: torch.Tensor  # [T] int32
    cu_seqlens_q: torch.Tensor  # [B + 1] int32
    seq_lens: torch.Tensor  # [B] int32, context after the step
    block_tables: torch.Tensor  # [B, max_blocks] int32
    # the balanced decode launch's work table, made once a step for every layer (``kernels.decode_work``); None:
    # none needed, or each attention call makes its own
    decode_work: Optional[torch.Tensor] = None


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [hidden]
    qkv_proj: torch.Tensor  # [(q_heads + 2 * kv_heads) * head_dim, hidden]: q, then k, then v
    q_norm: torch.Tensor  # [head_dim]
    k_norm: torch.Tensor  # [head_dim]
    o_proj: torch.Tensor  # [hidden, q_heads * head_dim]
    post_norm: torch.Tensor  # [hidden]
    gate_up_proj: torch.Tensor  # [2 * intermediate, hidden]: gate, then up
    down_proj: torch.Tensor  # [hidden, intermediate]


def with_decode_work(attn: AttentionInputs, k_cache: torch.Tensor) -> AttentionInputs:
    """``attn`` with the step's decode work table (one for every layer), if the attention deals its decode work
    out by key tiles; ``attn`` itself otherwise."""
    work = kernels.decode_work(attn.cu_seqlens_q, attn.seq_lens, attn.block_tables, k_cache)
    return attn if work is None else dataclasses.replace(attn, decode_work=work)


class Qwen3Layer:
    """One decoder layer. Its stages are methods, each one op or a fused pair of Vidur's operators (their names in
    brackets), so that a profiler times exactly what ``forward`` runs."""

    def __init__(self, shape: ModelShape, weights: LayerWeights) -> None:
        self.shape = shape
        self.w = weights
        self.q_size = shape.num_attention_heads * shape.head_dim
        self.kv_size = shape.num_kv_heads * shape.head_dim
        self.scale = shape.head_dim ** -0.5

    def _split_qkv(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q ``[T, q_heads, head_dim]``, k and v ``[T, kv_heads, head_dim]``: views of the fused projection."""
        s, t = self.shape, qkv.shape[0]
        q = qkv[:, : self.q_size].view(t, s.num_attention_heads, s.head_dim)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].view(t, s.num_kv_heads, s.head_dim)
        v = qkv[:, self.q_size + self.kv_size :].view(t, s.num_kv_heads, s.head_dim)
        return q, k, v

    def qkv_proj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[attn_pre_proj] q, k and v of one matmul (the first layer's; the others' come with their norm)."""
        return self._split_qkv(kernels.linear(x, self.w.qkv_proj))

    def input_norm_qkv_proj(self, h: torch.Tensor, residual: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """[input_layernorm + attn_pre_proj] the residual add + norm and the qkv matmul: ``(q, k, v, residual)``.
        One kernel where ``kernels.fuses_projection_input`` (a batch-1 decode on the GPU), two elsewhere."""
        qkv, residual = kernels.add_rms_norm_linear(h, residual, self.w.input_norm, self.shape.rms_norm_eps,
                                                    self.w.qkv_proj)
        return (*self._split_qkv(qkv), residual)

    def rope_and_store(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                       attn: AttentionInputs, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       cos_sin: torch.Tensor) -> None:
        """[attn_rope + attn_kv_cache_save] qk-norm and RoPE in place, K/V into their slots: one kernel."""
        kernels.qk_norm_rope_store_kv(q, k, v, self.w.q_norm, self.w.k_norm, positions, cos_sin,
                                      self.shape.rms_norm_eps, k_cache, v_cache, attn.slot_mapping)

    def attend(self, q: torch.Tensor, attn: AttentionInputs, k_cache: torch.Tensor,
               v_cache: torch.Tensor) -> torch.Tensor:
        """[attn_prefill / attn_decode] paged attention of every entry's new tokens; ``[T, q_heads * head_dim]``."""
        o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        kernels.paged_attention(q, k_cache, v_cache, attn.cu_seqlens_q, attn.seq_lens, attn.block_tables, self.scale,
                                out=o, work=attn.decode_work)
        return o.view(q.shape[0], self.q_size)

    def o_proj(self, o: torch.Tensor) -> torch.Tensor:
        """[attn_post_proj]"""
        return kernels.linear(o, self.w.o_proj)

    def post_norm_up_proj(self, h: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[post_attention_layernorm + mlp_up_proj] the residual add + norm and the gate-up matmul:
        ``(gate_up [T, 2 * intermediate], residual)``; fused as ``input_norm_qkv_proj`` is."""
        return kernels.add_rms_norm_linear(h, residual, self.w.post_norm, self.shape.rms_norm_eps,
                                           self.w.gate_up_proj)

    def mlp_act_down_proj(self, gate_up: torch.Tensor) -> torch.Tensor:
        """[mlp_act + mlp_down_proj] ``silu(gate) * up`` and the down matmul; fused as ``input_norm_qkv_proj``
        is."""
        return kernels.silu_and_mul_linear(gate_up, self.w.down_proj)

    def forward(self, h: torch.Tensor, residual: Optional[torch.Tensor], positions: torch.Tensor,
                attn: AttentionInputs, k_cache: torch.Tensor, v_cache: torch.Tensor,
                cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, residual)`` in, ``(h, residual)`` out: each residual add is fused into the next norm
        [input_layernorm, post_attention_layernorm, add]."""
        if residual is None:  # the first layer: the residual stream starts as the embeddings
            residual, h = h, kernels.rms_norm(h, self.w.input_norm, self.shape.rms_norm_eps)
            q, k, v = self.qkv_proj(h)
        else:
            q, k, v, residual = self.input_norm_qkv_proj(h, residual)
        self.rope_and_store(q, k, v, positions, attn, k_cache, v_cache, cos_sin)
        h = self.o_proj(self.attend(q, attn, k_cache, v_cache))
        gate_up, residual = self.post_norm_up_proj(h, residual)
        return self.mlp_act_down_proj(gate_up), residual


class Qwen3Model:
    """The whole decoder: embeddings, layers, final norm and LM head."""

    def __init__(self, shape: ModelShape, embed_tokens: torch.Tensor, layers: list[LayerWeights],
                 final_norm: torch.Tensor, lm_head: torch.Tensor) -> None:
        self.shape = shape
        self.embed_tokens = embed_tokens
        self.layers = [Qwen3Layer(shape, w) for w in layers]
        self.final_norm = final_norm
        self.lm_head = lm_head  # the embeddings' own tensor when tied
        self.cos_sin = kernels.rope_cos_sin(shape.head_dim, shape.max_position_embeddings, shape.rope_theta,
                                            device=embed_tokens.device)

    @classmethod
    def from_hf_state_dict(cls, shape: ModelShape, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
                           device: torch.device) -> "Qwen3Model":
        """Map a transformers ``Qwen3ForCausalLM`` state dict onto the fused layout. The input is never modified;
        a tensor already of ``dtype`` on ``device`` is shared, not copied (hand over a CPU state dict, or drop the
        source model, so that the weights are not held twice on the device)."""

        def get(name: str) -> torch.Tensor:
            if name not in state_dict:
                raise InputError(f"the state dict has no {name!r}: is it a Qwen3ForCausalLM's, of this shape?")
            return state_dict[name].to(device=device, dtype=dtype)

        def fused(*names: str) -> torch.Tensor:
            return torch.cat([get(n) for n in names], dim=0).contiguous()

        h, d, inter = shape.hidden_size, shape.head_dim, shape.intermediate_size
        q, kv = shape.num_attention_heads * d, shape.num_kv_heads * d
        expected_layer = LayerWeights(input_norm=(h,), qkv_proj=(q + 2 * kv, h), q_norm=(d,), k_norm=(d,),
                                      o_proj=(h, q), post_norm=(h,), gate_up_proj=(2 * inter, h), down_proj=(h, inter))
        layers = []
        for i in range(shape.num_layers):
            p = f"model.layers.{i}."
            w = LayerWeights(
                input_norm=get(p + "input_layernorm.weight"),
                qkv_proj=fused(*(p + f"self_attn.{x}_proj.weight" for x in "qkv")),
                q_norm=get(p + "self_attn.q_norm.weight"),
                k_norm=get(p + "self_attn.k_norm.weight"),
                o_proj=get(p + "self_attn.o_proj.weight").contiguous(),
                post_norm=get(p + "post_attention_layernorm.weight"),
                gate_up_proj=fused(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
                down_proj=get(p + "mlp.down_proj.weight").contiguous(),
            )
            for name, want in vars(expected_layer).items():
                if tuple(getattr(w, name).shape) != want:
                    raise InputError(f"layer {i}'s {name} is {tuple(getattr(w, name).shape)}, the model shape says "
                                     f"{want}: the state dict is not of this shape")
            layers.append(w)
        embed = get("model.embed_tokens.weight").contiguous()
        lm_head = embed if shape.tie_word_embeddings else get("lm_head.weight").contiguous()
        expected = (shape.vocab_size, shape.hidden_size)
        if tuple(embed.shape) != expected or tuple(lm_head.shape) != expected:
            raise InputError(f"embeddings / LM head are {tuple(embed.shape)} / {tuple(lm_head.shape)}, "
                             f"the model shape says {expected}")
        return cls(shape, embed, layers, get("model.norm.weight"), lm_head)

    @property
    def num_bytes(self) -> int:
        """Bytes of every weight, the tied head counted once (what a decode step must read)."""
        tensors = {t.data_ptr(): t for t in [self.embed_tokens, self.final_norm, self.lm_head]}
        for layer in self.layers:
            tensors.update((t.data_ptr(), t) for t in vars(layer.w).values())
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, attn: AttentionInputs,
                kv_cache: torch.Tensor, logits_indices: Optional[torch.Tensor]) -> torch.Tensor:
        """Logits ``[S, vocab]`` (model dtype) of the tokens at ``logits_indices`` (None: every token).

        ``kv_cache``: ``[2, num_layers, num_blocks, block_size, num_kv_heads, head_dim]``; the new tokens' K/V are
        stored into it through ``attn.slot_mapping`` before the attention reads it.
        """
        attn = with_decode_work(attn, kv_cache[0, 0])
        h, residual = F.embedding(input_ids, self.embed_tokens), None
        for i, layer in enumerate(self.layers):
            h, residual = layer.forward(h, residual, positions, attn, kv_cache[0, i], kv_cache[1, i], self.cos_sin)
        if logits_indices is not None:  # the final add + norm only where the head runs (both are per token)
            h, residual = h.index_select(0, logits_indices), residual.index_select(0, logits_indices)
        h, _ = kernels.add_rms_norm(h, residual, self.final_norm, self.shape.rms_norm_eps)
        return kernels.lm_head(h, self.lm_head)
