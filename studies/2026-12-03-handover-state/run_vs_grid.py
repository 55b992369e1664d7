"""The host's share of a step in a real-bench run against the profiler's host grid, on one engine config.

``run <setup> <qps> <n>``: real-bench exactly as the campaign runs it (``run_real_bench``: its replay, progress bar,
host-load probe, ``measured_run``), ``n`` lognormal requests at ``qps``, with ``StepProbe`` installed on the engine
when the clock starts (after the warm-up), so that every step of the run has its device time as the profiler takes
it: ``run-<setup>.csv`` (per step: requests, prompt tokens, wall from the step before's end, device, host = wall less
device, packed at its start or ahead). ``grid <setup>``: the host grid's decodes ``decode:n x 512`` on the same
config, three rounds round-robin, as ``bundle._measure_iterations`` times them: ``grid-<setup>.csv``.
``compare <setup> [folder]`` (no GPU): the two side by side, medians by count of decodes (``compare-vllm.txt``).

    source scripts/gpu_env.sh && python3 studies/2026-12-03-handover-state/run_vs_grid.py run vllm 10.2 400 \
        && python3 studies/2026-12-03-handover-state/run_vs_grid.py grid vllm      # $OUT: csv files

(one process an engine: its KV pool takes 90% of the GPU until the process ends).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpu_simulate_test.backends import get_backend
from gpu_simulate_test.backends.native import NativeBackend
from gpu_simulate_test.backends.recorder import Recorder, RunClock
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.real_bench import run as real_bench_run
from gpu_simulate_test.vidur_ext.profiler.host_share import StepProbe, stepping
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.workloads.spec import generate_workload

SETUPS = {  # the campaign's (scripts/h200_native_sweep.py)
    "sarathi": ["backend=native", "backend.vidur_scheduler=sarathi"],
    "vllm": ["backend=native", "backend.vidur_scheduler=vllm", "backend.max_batch_tokens=4096",
             "backend.cuda_graph_token_sizes=[16,32,64,128,256,512,768,1024,1536,2048,3072,4096]"],
}
WHERE = os.environ.get("PROBE_WHERE", "model=qwen3-0.6b hardware=h200").split()  # a CPU smoke run: a tiny model
GRID = [BatchShape.parse(f"decode:{n}x512") for n in os.environ.get("PROBE_DECODES", "1 2 4 8 16").split()]


class ProbedNative(NativeBackend):
    """The native driver with ``StepProbe`` on its engine from the run's first step; its records read at close."""

    records: list[Any] = []

    def start(self, recorder: Recorder) -> None:
        self._probe = StepProbe(self.engine).__enter__()
        super().start(recorder)

    def close(self) -> None:
        if getattr(self, "_probe", None) is not None:
            ProbedNative.records = list(self._probe.records())  # the engine is idle: every step waited for
            self._probe.__exit__(None, None, None)
            self._probe = None
        super().close()


def run(setup: str, qps: float, n: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="rvg-"))
    spec = compose_app("workload_spec", ["workload=lognormal_long_tail", f"workload.num_requests={n}",
                                         f"workload.arrival.qps={qps}", f"paths.root={root}"])
    workload = generate_workload(spec)
    app = compose_app("real_bench", [*WHERE, *SETUPS[setup], f"workload_id={workload.name}", f"paths.root={root}"])
    real_bench_run.get_backend = lambda name: ProbedNative  # this module's driver, the campaign's conditions
    out = real_bench_run.run_real_bench(app)
    it = pd.read_csv(Path(out) / "iteration_metrics.csv")
    rec = ProbedNative.records
    if len(rec) != len(it):
        raise RuntimeError(f"{len(rec)} probe records for {len(it)} steps")
    it["device_ns"] = [r.device_ns for r in rec]
    it["at_start"] = [r.at_start for r in rec]
    it["wall_ns"] = it.end_time_ns.diff()
    it["host_us"] = (it.wall_ns - it.device_ns) / 1e3
    cols = ["batch_size", "num_prefill_tokens", "wall_ns", "device_ns", "host_us", "at_start"]
    if os.environ.get("OUT"):
        it[cols].to_csv(Path(os.environ["OUT"]) / f"run-{setup}.csv", index=False)
    d = it[(it.num_prefill_tokens == 0) & ~it.at_start].dropna()
    for lo, hi in ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16)):
        x = d[(d.batch_size >= lo) & (d.batch_size <= hi)]
        if len(x):
            print(f"run {setup}: decodes {lo}-{hi} packed ahead: {len(x)} steps, host us p10/p50/p90 "
                  f"{np.percentile(x.host_us, 10):.0f}/{x.host_us.median():.0f}/{np.percentile(x.host_us, 90):.0f}, "
                  f"device us p50 {x.device_ns.median() / 1e3:.0f}", flush=True)
    p = it[(it.num_prefill_tokens > 0) & it.at_start].dropna()
    print(f"run {setup}: prefill steps packed at their start: {len(p)}, host us p50 {p.host_us.median():.0f}", flush=True)
    return 0


def grid(setup: str) -> int:
    cfg = compose_app("vidur_profile", [*WHERE, *SETUPS[setup]])
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    timer = StepTimer(cfg.backend, GRID, 10)
    backend.check_workload(timer.plan())
    backend.load()
    lines = ["round,shape,step,host_us,device_us"]
    recorder = Recorder([], RunClock())
    try:
        with stepping(backend, recorder) as probe:
            for r in range(3):
                for shape in GRID:
                    got = timer.measure(backend, recorder, shape, probe)
                    host = (got.ns - got.device_ns) / 1e3
                    lines += [f"{r},{shape},{i},{h:.1f},{d / 1e3:.1f}" for i, (h, d) in enumerate(zip(host, got.device_ns))]
                    print(f"grid {setup} r{r} {shape}: host us median {np.median(host):.0f}, device "
                          f"{np.median(got.device_ns) / 1e3:.0f}", flush=True)
    finally:
        backend.close()
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"grid-{setup}.csv").write_text("\n".join(lines) + "\n")
    return 0


def compare(setup: str, folder: Path) -> int:
    """The run's decodes of n requests packed ahead against the grid's ``decode:n x 512`` (all rounds), medians in
    us, from ``run-<setup>.csv`` and ``grid-<setup>.csv`` in ``folder``; and the run's prompts packed at their start."""
    it = pd.read_csv(folder / f"run-{setup}.csv").dropna()
    g = pd.read_csv(folder / f"grid-{setup}.csv")
    ahead = it[(it.num_prefill_tokens == 0) & ~it.at_start]
    print("decodes,run_steps,run_host_us,run_device_us,grid_host_us,grid_device_us")
    for n in sorted(int(x.split(":")[1].split("x")[0]) for x in g["shape"].unique()):
        x, y = ahead[ahead.batch_size == n], g[g["shape"] == f"decode:{n}x512"]
        print(f"{n},{len(x)},{x.host_us.median():.0f},{x.device_ns.median() / 1e3:.0f},{y.host_us.median():.0f},"
              f"{y.device_us.median():.0f}")
    p = it[(it.num_prefill_tokens > 0) & it.at_start]
    print(f"prompts packed at their start: {len(p)} steps, host us p50 {p.host_us.median():.0f}")
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    if sys.argv[1] == "compare":  # no GPU: the two outputs side by side
        raise SystemExit(compare(sys.argv[2], Path(sys.argv[3] if len(sys.argv) > 3 else Path(__file__).parent)))
    rc = run(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])) if sys.argv[1] == "run" else grid(sys.argv[2])
    print(f"{sys.argv[1]} {sys.argv[2]}: {time.monotonic() - t0:.0f} s", flush=True)
    raise SystemExit(rc)
