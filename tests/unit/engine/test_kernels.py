"""The engine's kernels on a machine without a GPU.

The Triton kernels run under triton's interpreter against the plain-torch references (``_interpreted_kernels.py``,
in a subprocess: ``TRITON_INTERPRET`` must be set before ``@triton.jit`` decorates, and must not reach the other
tests of this process), and compile for the H200's sm_90 with no spills, one specialisation per role
(``_compile_kernels.py``, in a subprocess: it swaps triton's driver). ``tests/gpu/test_kernels_gpu.py`` runs them
on the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from gpu_simulate_test.engine import kernels
from gpu_simulate_test.engine.kernels import reference

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)


def test_triton_kernels_match_the_references_under_the_interpreter() -> None:
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
                 str(HERE / "_interpreted_kernels.py")], {"TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def test_triton_kernels_compile_for_the_h200_without_spills_or_per_batch_variants() -> None:
    done = _run([str(HERE / "_compile_kernels.py")], {"TRITON_INTERPRET": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    compiled, summary = lines[:-1], lines[-1]
    assert {c["launch"] for c in compiled} == {"rms_norm", "add_rms_norm", "silu_and_mul", "store_kv", "qk_norm_rope",
                                                "qk_norm_rope_store_kv", "attention_decode", "attention_mixed",
                                                "attention_balanced", "linear"}
    for c in compiled:
        assert c["local_bytes"] == 0 and c["stack_bytes"] == 0, f"spills: {c}"
        assert c["shared_bytes"] <= 227 * 1024, f"over the H200's shared memory per block: {c}"
    prefill = [c for c in compiled if c["kernel"] == "_paged_attention_kernel" and c["num_warps"] == 8]
    assert [c["mma"] for c in prefill] == ["wgmma"], "prefill attention should use Hopper's wgmma"
    # batch size, token count, split count and block-table width never make triton compile a new variant:
    # attention has its decode and prefill launch (and the balanced decode, with its merge: AttentionPlan.balanced),
    # the norm and qk-norm kernels their two modes
    # (the skinny matmul: at one row plain, fused with the add + norm before it, fused with the activation before
    # it; the narrow projections' tiles at 2 and at 3-4 rows: skinny_plan)
    assert summary["specialisations"] == {"_decode_work_kernel": 1, "_merge_splits_kernel": 2,
                                          "_paged_attention_kernel": 3,
                                          "_qk_norm_rope_kernel": 2, "_rms_norm_kernel": 2,
                                          "_silu_and_mul_kernel": 1, "_skinny_matmul_kernel": 5,
                                          "_store_kv_kernel": 1}


def test_cpu_tensors_run_the_references() -> None:
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(4, 32, generator=gen), torch.randn(32, generator=gen)
    assert torch.equal(kernels.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6))
    assert torch.equal(kernels.silu_and_mul(x), reference.silu_and_mul(x))
    assert torch.equal(kernels.linear(x, x[:3]), torch.nn.functional.linear(x, x[:3]))
    head = torch.randn(50, 32, generator=gen)
    for rows in (0, 1, 2, 4):  # the weight-major product (CPU cost only): the same logits up to float32 rounding
        out, ref = kernels.lm_head(x[:rows], head), torch.nn.functional.linear(x[:rows], head)
        assert out.shape == ref.shape == (rows, 50) and torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert kernels.kernel_path("cpu") == "reference" and kernels.kernel_path("cuda:0") == "triton"
    assert kernels.paged_attention.__doc__ == reference.paged_attention.__doc__
