"""Manual: real-bench on the H100 with qwen3-0.6b, both HF backends, one 50-request workload.

Run on the GPU machine, after ``source scripts/gpu_env.sh``:
    python3 scripts/real_bench_h100.py --out "$OUT"
Each configuration runs in its own process (a CUDA failure in one cannot take the others down); run
directories go under ``<out>/real_runs/``, and ``<out>/summary.json`` holds the printed table.
Budget: about 8 minutes in all (generate with a dynamic cache costs ~35 ms per token on the H100,
so decode lengths are kept modest; default_compile_level is never used: its warm-up took 410 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.io.outputs import RUN_META
from gpu_simulate_test.testing import make_workload

REPO = Path(__file__).resolve().parents[1]

WORKLOAD_ID = "h100-qwen3-50"
COMMON = ["model=qwen3-0.6b", "hardware=h100", f"workload_id={WORKLOAD_ID}", "backend.warmup_requests=2"]
CB = ["backend=hf-continuous", "backend.num_blocks=256", "backend.block_size=256", "backend.max_batch_tokens=512", "backend.max_requests_per_batch=32"]
RUNS = {
    "generate-dynamic": ["backend=hf-generate", "backend.cache_implementation=dynamic"],
    "generate-static-compiled": ["backend=hf-generate", "backend.cache_implementation=static", "backend.compile=true"],
    "continuous": [*CB, "backend.use_cuda_graph=false"],
    "continuous-cuda-graph": [*CB, "backend.use_cuda_graph=true"],
}
TIMEOUT_S = {"generate-dynamic": 180, "generate-static-compiled": 150, "continuous": 120, "continuous-cuda-graph": 120}


def build_workload(root: Path) -> None:
    """50 requests, Poisson arrivals at 4/s, prompts 64-512 (log-uniform), decodes 16-64 tokens."""
    rng = random.Random(0)
    t, reqs = 0.0, []
    for _ in range(50):
        prompt = int(math.exp(rng.uniform(math.log(64), math.log(512))))
        reqs.append((int(t * 1e9), prompt, rng.randint(16, 64)))
        t += rng.expovariate(4.0)
    make_workload(root / "workloads", WORKLOAD_ID, reqs, vocab=150_000)


def summarize(run_dir: Path) -> dict:
    meta = json.loads((run_dir / RUN_META).read_text())
    tok = pd.read_csv(run_dir / "token_metrics.csv")
    gaps = tok.groupby("request_id")["token_time_ns"].diff().dropna().to_numpy()
    late = meta["dispatch_lateness"]
    return {
        "status": meta["status"],
        "finished": meta["num_finished"],
        "dispatch_p50_ms": late["p50_ns"] / 1e6 if late["p50_ns"] is not None else None,
        "dispatch_p99_ms": late["p99_ns"] / 1e6 if late["p99_ns"] is not None else None,
        "dispatch_max_ms": late["max_ns"] / 1e6 if late["max_ns"] is not None else None,
        "median_ms_per_decode_token": float(np.median(gaps)) / 1e6 if len(gaps) else None,
        "warmup_s": meta["warmup_s"],
        "run_s": meta["run_s"],
        "recompilations": meta.get("engine_stats", {}).get("recompilations_during_run"),
        "gpu": meta["gpu"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="artifact root (the lead passes $OUT)")
    ap.add_argument("--only", nargs="*", choices=sorted(RUNS), help="run only these configurations")
    args = ap.parse_args()
    root = args.out.resolve()
    if not (root / "workloads" / WORKLOAD_ID).exists():
        build_workload(root)
    from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S  # noqa: E402

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_replay import measure  # noqa: E402

    idle = measure(None, SWITCH_INTERVAL_S)
    print(f"replay loop alone at 1000 req/s: dispatch p99 {idle['p99_ns'] / 1e6:.3f} ms", flush=True)
    results: dict[str, dict] = {"replay_loop_alone": {"dispatch_p99_ms": idle["p99_ns"] / 1e6}}
    # Keep what scripts/gpu_env.sh put on the path (carried hydra/omegaconf), with src/ first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)}
    for name, overrides in RUNS.items():
        if args.only and name not in args.only:
            continue
        cmd = [sys.executable, "-m", "gpu_simulate_test.cli.real_bench", *COMMON, *overrides, f"paths.root={root}", f"run_id={name}", "overwrite=true"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S[name])
            if proc.returncode != 0:
                results[name] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-5:]}
            run_dir = root / "real_runs" / name
            if (run_dir / RUN_META).exists():
                results[name] = {**results.get(name, {}), **summarize(run_dir)}
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"timed out after {TIMEOUT_S[name]} s"}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    (root / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'config':26s} {'disp p50/p99/max ms':>22s} {'ms/decode tok':>14s} {'warm-up s':>10s} {'run s':>7s} {'recomp':>6s}")
    for name, r in results.items():
        if "median_ms_per_decode_token" in r:
            disp = f"{r['dispatch_p50_ms']:.3f}/{r['dispatch_p99_ms']:.3f}/{r['dispatch_max_ms']:.3f}"
            print(f"{name:26s} {disp:>22s} {r['median_ms_per_decode_token']:14.2f} {r['warmup_s']:10.1f} {r['run_s']:7.1f} {str(r['recompilations']):>6s}")
        elif name != "replay_loop_alone":
            print(f"{name:26s} FAILED: {r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
