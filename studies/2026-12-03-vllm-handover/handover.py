"""The host's share of decode steps (wall less device: the hand-over between two steps packed ahead) as the profiler
measures it, step by step, on four engine configs: the two policies x the two token caps of the campaign. The vllm
bundles measured 83-108 us on their grids (bimodal by shape, 30-181 us on their shape sets), the sarathi ones 29-77,
the campaign's runs ~30-40 (``docs/results/h200-qwen3-0.6b-native/README.md``): is it the policy, the token cap, or
neither (the host's state)?

    source scripts/gpu_env.sh && for c in sarathi-512 sarathi-4096 vllm-512 vllm-4096; do
        python3 studies/2026-12-03-vllm-handover/handover.py $c; done   # $OUT: handover-<config>.csv

(one process a config: an engine's KV pool takes 90% of the GPU until its process ends).

Per config (one engine each, random weights, as the profiler builds it), shapes ``decode:n x 512`` for n in 1, 4,
16, 64, each timed ``ROUNDS`` times round-robin by ``StepTimer`` with ``StepProbe`` under ``measured_run`` (exactly
as ``bundle._measure_iterations`` times the host grid), 10 steps a time: every step's host share.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from gpu_simulate_test.backends import get_backend
from gpu_simulate_test.backends.recorder import Recorder, RunClock
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiler.host_share import stepping
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

CONFIGS = {"sarathi-512": ("sarathi", 512), "sarathi-4096": ("sarathi", 4096), "vllm-512": ("vllm", 512),
           "vllm-4096": ("vllm", 4096)}
SHAPES = [BatchShape.parse(f"decode:{n}x512") for n in (1, 4, 16, 64)]
ROUNDS = 4
SAMPLES = 10


def main() -> int:
    lines = ["config,round,shape,step,host_us,device_us"]
    name = sys.argv[1]
    policy, cap = CONFIGS[name]
    cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                        f"backend.vidur_scheduler={policy}", f"backend.max_batch_tokens={cap}"])
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    timer = StepTimer(cfg.backend, SHAPES, SAMPLES)
    backend.check_workload(timer.plan())
    t0 = time.monotonic()
    backend.load()
    print(f"{name}: loaded in {time.monotonic() - t0:.1f} s", flush=True)
    recorder = Recorder([], RunClock())
    try:
        with stepping(backend, recorder) as probe:
            for r in range(ROUNDS):
                for shape in SHAPES:
                    got = timer.measure(backend, recorder, shape, probe)
                    host = (got.ns - got.device_ns) / 1e3
                    for i, (h, d) in enumerate(zip(host, got.device_ns / 1e3)):
                        lines.append(f"{name},{r},{shape},{i},{h:.1f},{d:.1f}")
                    print(f"{name} r{r} {shape}: host us median {np.median(host):.0f} "
                          f"[{' '.join(f'{h:.0f}' for h in host)}]", flush=True)
    finally:
        backend.close()
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"handover-{name}.csv").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
