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
import pandas as pd

from gpu_simulate_test.config import compose_app  # noqa: E402
from gpu_simulate_test.config.limits import resolve_limits  # noqa: E402
from gpu_simulate_test.io.meta import build_meta, write_json  # noqa: E402
from gpu_simulate_test.io.outputs import WORKLOAD_META  # noqa: E402
from gpu_simulate_test.io.schemas import TRACE_INTERVALS, TRACE_LENGTHS  # noqa: E402
from gpu_simulate_test.io.tables import write_table  # noqa: E402
from gpu_simulate_test.testing import make_profile  # noqa: E402
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits  # noqa: E402
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim  # noqa: E402

IMPORT_S = time.perf_counter() - T_START  # Python, Vidur (wandb, plotly, sklearn) and this package

MAX_PROMPT, MAX_OUTPUT = 8000, 1500


def write_workload(root: Path, n: int, qps: float, seed: int = 0) -> int:
    """Lengths and arrivals only (the simulator never reads prompt token ids); returns the longest request."""
    rng = np.random.default_rng(seed)
    prompt = np.clip(np.rint(rng.lognormal(np.log(1000), 0.9, n)), 4, MAX_PROMPT).astype(np.int64)
    output = np.clip(np.rint(rng.lognormal(np.log(130), 0.8, n)), 1, MAX_OUTPUT).astype(np.int64)
    cv = 2.0
    gaps = rng.gamma(1 / cv**2, cv**2 / qps, n)
    arrivals = np.rint(np.cumsum(gaps) * 1e9).astype(np.int64)
    arrivals -= arrivals[0]
    path = root / "conv"
    path.mkdir(parents=True)
    ids = np.arange(n)
    write_table(pd.DataFrame({"request_id": ids, "num_prefill_tokens": prompt, "num_decode_tokens": output}),
                path / TRACE_LENGTHS.filename, TRACE_LENGTHS)
    write_table(pd.DataFrame({"request_id": ids, "arrival_time_ns": arrivals, "inter_arrival_ns": np.diff(arrivals, prepend=0)}),
                path / TRACE_INTERVALS.filename, TRACE_INTERVALS)
    write_json(path / WORKLOAD_META, build_meta(kind="workload", id="conv", config={"bench": True}, inputs={}))
    print(f"workload: {n} requests, median prompt {int(np.median(prompt))}, median output {int(np.median(output))}, "
          f"span {arrivals[-1] / 1e9:.0f} s")
    return int((prompt + output).max())


def h100_like_bundle(root: Path, cfg, max_kv: int) -> None:
    """Per-layer costs roughly shaped like Qwen3-0.6B on an H100 (ms), covering the backend's limits."""
    backend = resolve_limits(cfg.backend, MAX_PROMPT)
    limits = GridLimits(tokens_per_iteration=backend.token_budget, prefill_chunk=backend.token_budget,
                        batch_size=backend.batch_cap, request_tokens=max_kv, block_size=backend.block_size)
    make_profile(root, f"bundle-{cfg.backend.name}", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                 limits=limits, op_ms=lambda n: 0.004 + 2e-6 * n,
                 prefill_ms=lambda c, k: 0.01 + 1e-8 * c * (k + c), decode_ms=lambda b, k: 0.01 + 2e-8 * b * k)


def run(root: Path, backend: str, longest: int, label: str) -> float:
    overrides = [f"paths.root={root}", "model=qwen3-0.6b", "hardware=h100", f"backend={backend}", "workload_id=conv",
                 f"profiling_root=bundle-{backend}", f"run_id={label}"]
    cfg = compose_app("vidur_sim", overrides)
    bundle = root / "profiling" / f"bundle-{backend}"
    if not bundle.exists():
        h100_like_bundle(root / "profiling", cfg, max(longest, 10240))
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
