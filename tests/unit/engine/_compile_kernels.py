"""Compile every Triton kernel the wrappers launch, at Qwen3-0.6B serving shapes in bfloat16, for the H200 (sm_90),
on a machine without a GPU; print one JSON line per compiled kernel with its resources.

The wrappers run on CPU tensors against a stand-in driver that names an sm_90 target, and triton's
``jit_cache_hook`` compiles each launch exactly as specialised (argument types, divisibility, constexprs) and then
cancels it, so no kernel runs. ``test_kernels.py`` runs this in a subprocess: the stand-in driver must not leak into
other tests. Registers, spills and shared memory come from ``cuobjdump`` (bundled with triton).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile

import torch
import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.driver import driver

TARGET = GPUTarget("cuda", 90, 32)
TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


class Sm90Driver:
    """Just enough of triton's driver to specialise and compile for an sm_90 device."""

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self) -> GPUTarget:
        return TARGET


def resources(kernel) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([os.path.join(TOOLS, "cuobjdump"), "--dump-resource-usage", f.name],
                               capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", usage))
    ptx = kernel.asm["ptx"]
    return {"registers": int(found["REG"]), "stack_bytes": int(found["STACK"]), "local_bytes": int(found["LOCAL"]),
            "shared_bytes": kernel.metadata.shared,
            "mma": "wgmma" if "wgmma" in ptx else "mma.sync" if "mma.sync" in ptx else None}


def compile_instead_of_launch(label: list[str], seen: dict[str, set[str]]):
    """Compile each new specialisation once and print its resources; record which ones every launch needed."""
    compiled: set[str] = set()

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled) -> bool:
        seen.setdefault(fn.name, set()).add(str(key))
        if str(key) not in compiled:
            compiled.add(str(key))
            src = ASTSource(fn.jit_function, compile["signature"], compile["constants"], compile["configs"][0])
            kernel = triton.compile(src, target=TARGET, options={"num_warps": compile["num_warps"],
                                                                   "num_stages": compile["num_stages"],
                                                                   "num_ctas": compile["num_ctas"]})
            print(json.dumps({"launch": label[0], "kernel": fn.name, "num_warps": compile["num_warps"],
                              **resources(kernel)}), flush=True)
        return True  # handled: triton launches nothing

    return hook


def launches(tokens: int, batch: int, splits: int, width: int) -> dict:
    """Every wrapper at Qwen3-0.6B's shapes: ``tokens`` new tokens, ``batch`` sequences, block tables ``width``."""
    from gpu_simulate_test.engine.kernels import activation, attention, cache, matmul, norm, rope

    bf16, i32 = torch.bfloat16, torch.int32
    hidden, n_q, n_kv, head_dim, inter, page = 1024, 16, 8, 128, 3072, 16
    x, w = torch.randn(tokens, hidden, dtype=bf16), torch.randn(hidden, dtype=bf16)
    qkv = torch.randn(tokens, (n_q + 2 * n_kv) * head_dim, dtype=bf16)
    q = qkv[:, : n_q * head_dim].view(tokens, n_q, head_dim)
    k = qkv[:, n_q * head_dim: (n_q + n_kv) * head_dim].view(tokens, n_kv, head_dim)
    v = qkv[:, (n_q + n_kv) * head_dim:].view(tokens, n_kv, head_dim)
    k_cache = torch.randn(32, page, n_kv, head_dim, dtype=bf16)
    v_cache = torch.randn_like(k_cache)
    slots, positions = torch.arange(tokens), torch.arange(tokens)
    cos_sin, hw = torch.randn(4096, head_dim), torch.randn(head_dim, dtype=bf16)
    tables = torch.zeros(batch, width, dtype=i32)
    lens = torch.full((batch,), 100, dtype=i32)
    decode_cu = torch.arange(batch + 1, dtype=i32)
    mixed_cu = torch.cat([torch.arange(batch, dtype=i32), torch.tensor([tokens], dtype=i32)])
    plan = dataclasses.replace(attention.plan_attention(batch, n_kv, width * page, 1, balanced=False),
                               num_splits=splits)
    return {
        "rms_norm": lambda: norm.rms_norm(x, w, 1e-6),
        "add_rms_norm": lambda: norm.add_rms_norm(x, x.clone(), w, 1e-6),
        "silu_and_mul": lambda: activation.silu_and_mul(torch.randn(tokens, 2 * inter, dtype=bf16)),
        "store_kv": lambda: cache.store_kv(k, v, k_cache, v_cache, slots),
        "qk_norm_rope": lambda: rope.qk_norm_rope(q, k, hw, hw, positions, cos_sin, 1e-6),
        "qk_norm_rope_store_kv": lambda: rope.qk_norm_rope_store_kv(q, k, v, hw, hw, positions, cos_sin, 1e-6,
                                                                    k_cache, v_cache, slots),
        "attention_decode": lambda: attention.paged_attention(q[:batch], k_cache, v_cache, decode_cu, lens, tables,
                                                              0.1, plan=plan),
        "attention_mixed": lambda: attention.paged_attention(q, k_cache, v_cache, mixed_cu, lens, tables, 0.1,
                                                             plan=plan),
        "attention_balanced": lambda: attention.paged_attention(q[:batch], k_cache, v_cache, decode_cu, lens, tables,
                                                                0.1, plan=dataclasses.replace(plan, balanced=True)),
        # a layer's projections, plain and with their fused producers, where the engine takes them (one row; the
        # narrow ones up to NARROW_ROWS)
        "linear": lambda: [
            *(matmul.skinny_matmul(torch.randn(tokens, k, dtype=bf16), torch.randn(n, k, dtype=bf16))
              for n, k in ((4096, hidden), (hidden, 2048), (2 * inter, hidden), (hidden, inter))
              if tokens <= matmul.CUTOVER_ROWS or (tokens <= matmul.NARROW_ROWS and n <= k)),
            *([] if tokens > matmul.CUTOVER_ROWS else [
                matmul.skinny_add_rms_norm_matmul(x, x.clone(), w, 1e-6, torch.randn(4096, hidden, dtype=bf16)),
                matmul.skinny_silu_and_mul_matmul(torch.randn(tokens, 2 * inter, dtype=bf16),
                                                  torch.randn(hidden, inter, dtype=bf16))])],
    }


def main() -> None:
    driver.set_active(Sm90Driver())
    label, seen = [""], {}
    knobs.runtime.jit_cache_hook = compile_instead_of_launch(label, seen)
    # a serving run's variety: batch sizes, token counts, split counts and block-table widths
    for tokens, batch, splits, width in [(1, 1, 33, 2560), (64, 4, 1, 256), (97, 1, 2, 2560), (300, 17, 8, 37),
                                         (16, 16, 1, 64), (2, 2, 1, 64), (4, 4, 1, 64)]:
        for name, launch in launches(tokens, batch, splits, width).items():
            label[0] = name
            launch()
    print(json.dumps({"specialisations": {name: len(keys) for name, keys in sorted(seen.items())}}))


if __name__ == "__main__":
    main()
