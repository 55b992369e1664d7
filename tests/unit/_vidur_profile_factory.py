"""Write hand-made profiling roots (``specs/profiling_root.md`` layout) for vidur-sim tests and its benchmark.

Operator times are given as functions of the shape, so a test can use constants and compute the simulated
schedule by hand: with Vidur 0.0.26, one iteration takes
``num_layers * (sum of the 9 mlp.csv ops + sum of attn_prefill over prefill requests
+ attn_decode * (1 + 0.1 if GQA and decode batch > 1))`` milliseconds (attn_kv_cache_save is left out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.schemas import (
    ATTENTION_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    MLP_PROFILE_OPS,
    PROFILE_STATS,
)
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.vidur_ext.profiling_root import DATASET_CONFIG_FILE, META_FILE, GridLimits
from gpu_simulate_test.vidur_ext.registration import vidur_model_name


def _ladder(top: int, start: int = 1) -> list[int]:
    out, p = {top}, 1
    while p <= top:
        out.update(v for v in (p, p * 3 // 2) if start <= v <= top)
        p *= 2
    return sorted(out)


def _stats(op: str, value: float | None) -> dict[str, Any]:
    return {f"time_stats.{op}.{s}": value if s != "std" or value is None else 0.0 for s in PROFILE_STATS}


def make_profile(
    root: Path, bundle_id: str, *, model: Any, hardware: Any, backend: Any, limits: GridLimits,
    op_ms: Callable[[int], float], prefill_ms: Callable[[int, int], float], decode_ms: Callable[[int, int], float],
) -> Path:
    """A complete bundle: ``op_ms(num_tokens)`` for every mlp.csv op, attention by ``(chunk, kv)`` / ``(batch, kv)``."""
    path = Path(root) / bundle_id
    path.mkdir(parents=True)
    dims = {"n_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads, "n_embd": model.hidden_size,
            "n_expanded_embd": model.intermediate_size, "vocab_size": model.vocab_size, "use_gated_mlp": True,
            "num_tensor_parallel_workers": 1}
    mlp = pd.DataFrame([
        {"num_tokens": n, **dims, **{k: v for op in MLP_PROFILE_OPS for k, v in _stats(op, op_ms(n)).items()}}
        for n in _ladder(limits.max_tokens)
    ])
    write_table(mlp, path / MLP_PROFILE.filename, MLP_PROFILE)
    kv_points = [0, *_ladder(limits.max_kv_tokens, start=16)]
    attn_dims = {"n_embd": model.hidden_size, "n_q_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads,
                 "block_size": limits.block_size, "num_tensor_parallel_workers": 1, "max_model_len": limits.max_kv_tokens,
                 "attention_backend": "sdpa"}
    rows = []
    for chunk in _ladder(limits.max_prefill_chunk, start=8):
        for kv in kv_points:
            if chunk + kv <= limits.max_kv_tokens:
                rows.append({"batch_size": 1, "prefill_chunk_size": chunk, "kv_cache_size": kv, "is_prefill": True, **attn_dims,
                             **_stats("attn_prefill", prefill_ms(chunk, kv)), **_stats("attn_decode", None),
                             **_stats("attn_kv_cache_save", 0.0)})
    for batch in _ladder(limits.max_batch_size):
        for kv in kv_points[1:]:
            rows.append({"batch_size": batch, "prefill_chunk_size": 0, "kv_cache_size": kv, "is_prefill": False, **attn_dims,
                         **_stats("attn_prefill", None), **_stats("attn_decode", decode_ms(batch, kv)),
                         **_stats("attn_kv_cache_save", 0.0)})
    write_table(pd.DataFrame(rows), path / ATTENTION_PROFILE.filename, ATTENTION_PROFILE)
    write_table(pd.DataFrame([{"shape": "decode:1x16", "role": "held_out", "batch_size": 1, "num_prefill_tokens": 0,
                               "num_decode_tokens": 1, "num_samples": 1, "median_ns": 1, "p10_ns": 1, "p90_ns": 1}]),
                path / ITERATION_PROFILE.filename, ITERATION_PROFILE)
    write_table(pd.DataFrame([{"shape": "decode:1x16", "measured_ns": 1, "predicted_ns": 1, "error_pct": 0.0}]),
                path / HELD_OUT_CHECK.filename, HELD_OUT_CHECK)
    (path / DATASET_CONFIG_FILE).write_text(json.dumps({"model": vidur_model_name(model), "device_sku": hardware.vidur_device}))
    config = {"model": {"name": model.name}, "hardware": {"name": hardware.name}, "backend": {"name": backend.name}}
    write_json(path / META_FILE, build_meta(kind="profile_bundle", id=bundle_id, config=config, inputs={},
                                           grid_limits=limits.to_dict()))
    return path


def constant_profile(root: Path, bundle_id: str, *, model: Any, hardware: Any, backend: Any, limits: GridLimits,
                     op: float, prefill: float, decode: float) -> Path:
    """Every mlp.csv op takes ``op`` ms, prefill attention ``prefill`` ms, decode attention ``decode`` ms (per layer)."""
    return make_profile(root, bundle_id, model=model, hardware=hardware, backend=backend, limits=limits,
                        op_ms=lambda n: op, prefill_ms=lambda c, k: prefill, decode_ms=lambda b, k: decode)

