"""Time vidur-sim on 10,000 requests of a conversation-like trace (target: sarathi mapping under 60 s on 2 cores).

No public trace is reachable offline, so the workload is drawn like a conversation trace: lognormal prompts
(median 1,000 tokens) and outputs (median 130), bursty gamma arrivals (CV 2); it is written as workload
files and replayed exactly. The profile is a synthetic H100-like bundle for Qwen3-0.6B (linear operator
costs), one per backend. Times include Vidur's start-up: config, predictor training (cold cache) or loading
(warm cache), simulation and writing the run directory.

    .venv/bin/python benchmarks/bench_vidur_sim.py [--requests 10000] [--qps 40] [--skip-vllm]
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse
import tempfile
from pathlib import Path

import numpy as np

from gpu_simulate_test.config import compose_app  # noqa: E402
from gpu_simulate_test.testing import conversation_workload, h100_like_profile  # noqa: E402
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim  # noqa: E402
from gpu_simulate_test.workloads.load import load_workload  # noqa: E402

IMPORT_S = time.perf_counter() - T_START  # Python, Vidur (wandb, plotly, sklearn) and this package

MAX_PROMPT = 8000


def write_workload(root: Path, n: int, qps: float) -> int:
    """The conversation-like workload ``conv``; returns its longest request."""
    conversation_workload(root, "conv", n, qps, max_prompt=MAX_PROMPT)
    w = load_workload(root, "conv")
    prompt = np.array([r.num_prefill_tokens for r in w.requests])
    output = np.array([r.num_decode_tokens for r in w.requests])
    print(f"workload: {n} requests, median prompt {int(np.median(prompt))}, median output {int(np.median(output))}, "
          f"span {w.requests[-1].arrival_time_ns / 1e9:.0f} s")
    return w.max_context


def run(root: Path, backend: str, longest: int, label: str) -> float:
    overrides = [f"paths.root={root}", "model=qwen3-0.6b", "hardware=h100", f"backend={backend}", "workload_id=conv",
                 f"profiling_root=bundle-{backend}", f"run_id={label}"]
    cfg = compose_app("vidur_sim", overrides)
    bundle = root / "profiling" / f"bundle-{backend}"
    if not bundle.exists():
        h100_like_profile(root / "profiling", f"bundle-{backend}", model=cfg.model, hardware=cfg.hardware,
                          backend=cfg.backend, max_prompt=MAX_PROMPT, max_kv=max(longest, 10240))
    t0 = time.perf_counter()
    run_vidur_sim(cfg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--qps", type=float, default=40.0)
    ap.add_argument("--skip-vllm", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        longest = write_workload(root / "workloads", args.requests, args.qps)
        cold = run(root, "sarathi", longest, "sarathi-cold")
        warm = run(root, "sarathi", longest, "sarathi-warm")
        print(f"imports (Vidur included): {IMPORT_S:.1f} s")
        print(f"sarathi mapping (backend=sarathi), {args.requests} requests: {IMPORT_S + cold:.1f} s with imports and a "
              f"cold predictor cache (simulation run {cold:.1f} s), {warm:.1f} s warm; target < 60 s")
        if not args.skip_vllm:
            one = run(root, "hf-generate", longest, "vllm-cold")
            print(f"vllm mapping, one request at a time (backend=hf-generate): {one:.1f} s (cold predictor cache)")


if __name__ == "__main__":
    main()
