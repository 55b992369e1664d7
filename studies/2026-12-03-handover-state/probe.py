"""What the host's slow hand-over state is, and what CUDA graphs up to the vllm setup's token cap change.

``handover``: one engine as the profiler builds it (sarathi, budget 512), ``decode:n x 512`` timed by ``StepTimer``
with ``StepProbe`` under ``measured_run`` as the host grid is, ``ROUNDS`` rounds of 10 steps round-robin, then one
long stretch of ``LONG`` steps; for every step, besides its host share (wall less device), the engine thread's CPU at
the launch (``sched_getcpu``), how long its sync took on the host (``sync_us``: from ``wait`` to the sync's
return), and the Python between the sync's return and the next launch (``gap_us``). Then the same rounds with the
engine thread pinned to one CPU (``pinned``). Which of these moves with the slow state (~80-130 us against ~25-45,
``../2026-12-03-vllm-handover/``) says where it is.

``prefill <default|graphs>``: the vllm setup's engine (whole prompts, token cap 4,096) with the default token
buckets (steps over 512 tokens eager) or with buckets up to the cap (``GRAPH_TOKENS``): its start-up, graphs, and
``prefill:t`` for t over 512 timed as the profiler times it (wall and device).

    source scripts/gpu_env.sh && python3 studies/2026-12-03-handover-state/probe.py handover \
        && python3 studies/2026-12-03-handover-state/probe.py prefill default \
        && python3 studies/2026-12-03-handover-state/probe.py prefill graphs    # $OUT: csv files

(one process an engine: its KV pool takes 90% of the GPU until the process ends).
"""

from __future__ import annotations

import ctypes
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

DECODES = [BatchShape.parse(f"decode:{n}x512") for n in os.environ.get("PROBE_DECODES", "1 4 16 64").split()]
ROUNDS = int(os.environ.get("PROBE_ROUNDS", 4))
SAMPLES = 10
LONG = int(os.environ.get("PROBE_LONG", 1000))
PREFILLS = [BatchShape.parse(f"prefill:{t}") for t in (520, 768, 1000, 1536, 2048, 3000, 4096)]
_getcpu = ctypes.CDLL(None).sched_getcpu  # the CPU the calling thread runs on (glibc)
GRAPH_TOKENS = "[16,32,64,128,256,512,768,1024,1536,2048,2560,3072,3584,4096]"


def _out(name: str, lines: list[str]) -> None:
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / name).write_text("\n".join(lines) + "\n")


def _backend(overrides: list[str]):
    where = os.environ.get("PROBE_WHERE", "model=qwen3-0.6b hardware=h200").split()  # a CPU smoke run: a tiny model
    cfg = compose_app("vidur_profile", [*where, "backend=native", *overrides])
    return cfg, get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)


class ThreadProbe:
    """Per launch: the engine thread's CPU, its sync's host time and the Python from the sync's return to the launch."""

    def __init__(self, runner) -> None:
        self.runner, self.rows, self._back = runner, [], None
        self._launch, self._wait = runner.launch, runner.wait  # StepProbe's wrappers (installed first)

    def install(self) -> None:
        def launch(packed):
            t = time.perf_counter_ns()
            self.rows.append((_getcpu(), self._back, t))
            self._launch(packed)

        def wait():
            t0 = time.perf_counter_ns()
            out = self._wait()
            self._back = (t0, time.perf_counter_ns())
            return out

        self.runner.launch, self.runner.wait = launch, wait

    def at(self, launches: list[int]) -> list[tuple[int, float, float]]:
        """(cpu, sync_us, gap_us) of the given launches (sync and gap: of the wait just before each)."""
        out = []
        for i in launches:
            cpu, back, t = self.rows[i]
            out.append((cpu, float("nan"), float("nan")) if back is None
                       else (cpu, (back[1] - back[0]) / 1e3, (t - back[1]) / 1e3))
        return out


def handover() -> int:
    cfg, backend = _backend([])
    timer = StepTimer(cfg.backend, DECODES, SAMPLES)
    long_timer = StepTimer(cfg.backend, [BatchShape.parse("decode:4x512")], LONG)
    backend.check_workload(timer.plan())
    backend.check_workload(long_timer.plan())
    t0 = time.monotonic()
    backend.load()
    print(f"loaded in {time.monotonic() - t0:.1f} s; cpus {sorted(os.sched_getaffinity(0))}", flush=True)
    lines = ["phase,round,shape,step,host_us,device_us,cpu,sync_us,gap_us,t_s"]
    recorder = Recorder([], RunClock())
    start = time.monotonic()
    try:
        with stepping(backend, recorder) as probe:
            threads = ThreadProbe(backend.native_engine().runner)  # over StepProbe's wrappers; the engine is idle
            threads.install()

            def one(phase: str, r: int, shape: BatchShape, t: StepTimer) -> None:
                since = recorder.num_steps
                got = t.measure(backend, recorder, shape, probe)
                # the picked steps' launches, found by their device times (launch i is recorded step i)
                records, idx, j = probe.records(), [], since
                for d in got.device_ns:
                    while records[j].device_ns != d:
                        j += 1
                    idx.append(j)
                    j += 1
                per = threads.at(idx)
                host = (got.ns - got.device_ns) / 1e3
                for i, (h, (cpu, sync_us, gap_us)) in enumerate(zip(host, per)):
                    lines.append(f"{phase},{r},{shape},{i},{h:.1f},{got.device_ns[i] / 1e3:.1f},{cpu},{sync_us:.1f},"
                                 f"{gap_us:.1f},{time.monotonic() - start:.3f}")
                print(f"{phase} r{r} {shape}: host median {np.median(host):.0f} us, sync median "
                      f"{np.nanmedian([s for _, s, _ in per]):.0f}, gap median {np.nanmedian([g for _, _, g in per]):.0f}, "
                      f"cpus {sorted({c for c, _, _ in per})}", flush=True)

            for r in range(ROUNDS):
                for shape in DECODES:
                    one("rounds", r, shape, timer)
            one("long", 0, BatchShape.parse("decode:4x512"), long_timer)
            # the engine thread pinned to the CPU it ran on last (a thread's affinity: only it moves)
            cpu = threads.rows[-1][0]
            backend.native_engine().runner.wait = _pinned(backend.native_engine().runner.wait, cpu)
            for r in range(ROUNDS):
                for shape in DECODES:
                    one("pinned", r, shape, timer)
    finally:
        backend.close()
    _out("handover-state.csv", lines)
    return 0


def _pinned(wait, cpu: int):
    """``wait`` that pins the calling (engine) thread to ``cpu`` the first time it runs."""
    done = []

    def pinned_wait():
        if not done:
            os.sched_setaffinity(0, {cpu})
            done.append(cpu)
            print(f"engine thread pinned to cpu {cpu}", flush=True)
        return wait()

    return pinned_wait


def prefill(mode: str) -> int:
    overrides = ["backend.vidur_scheduler=vllm", "backend.max_batch_tokens=4096"]
    if mode == "graphs":
        overrides.append(f"backend.cuda_graph_token_sizes={GRAPH_TOKENS}")
    cfg, backend = _backend(overrides)
    timer = StepTimer(cfg.backend, PREFILLS, 5)
    backend.check_workload(timer.plan())
    t0 = time.monotonic()
    backend.load()
    load_s = time.monotonic() - t0
    runner = backend.native_engine().runner
    print(f"{mode}: loaded in {load_s:.1f} s, {len(runner.graphs)} graphs, token buckets {runner.graph_token_sizes}",
          flush=True)
    lines = ["mode,load_s,num_graphs,shape,step,wall_us,device_us"]
    recorder = Recorder([], RunClock())
    try:
        with stepping(backend, recorder) as probe:
            for r in range(2):
                for shape in PREFILLS:
                    got = timer.measure(backend, recorder, shape, probe)
                    for i, (w, d) in enumerate(zip(got.ns, got.device_ns)):
                        lines.append(f"{mode},{load_s:.2f},{len(runner.graphs)},{shape},{r * 10 + i},{w / 1e3:.1f},{d / 1e3:.1f}")
                    print(f"{mode} r{r} {shape}: wall median {np.median(got.ns) / 1e3:.0f} us, device "
                          f"{np.median(got.device_ns) / 1e3:.0f}", flush=True)
    finally:
        backend.close()
    _out(f"prefill-{mode}.csv", lines)
    return 0


def summarize(path: Path) -> int:
    """``handover-state.csv`` read back (no GPU): each shape's median host share a round and phase, and the long
    stretch's medians of each 100 steps with its p10 and p90 over all."""
    import pandas as pd

    d = pd.read_csv(path)
    print(d[d.phase != "long"].groupby(["phase", "shape"], sort=False).apply(
        lambda x: " ".join(f"{m:.0f}" for m in x.groupby("round").host_us.median()), include_groups=False).to_string())
    long = d[d.phase == "long"].reset_index(drop=True)
    blocks = long.groupby(long.index // 100).host_us.median()
    print(f"long stretch, medians of each 100 steps: {', '.join(f'{m:.0f}' for m in blocks)}; p10-p90 over all "
          f"{np.percentile(long.host_us, 10):.0f}-{np.percentile(long.host_us, 90):.0f}; cpus {sorted(int(c) for c in d.cpu.unique())}; "
          f"gap us {d.gap_us.min():.0f}-{d.gap_us.max():.0f} (median of a stretch: "
          f"{d.groupby(['phase', 'round', 'shape']).gap_us.median().min():.0f}-"
          f"{d.groupby(['phase', 'round', 'shape']).gap_us.median().max():.0f})")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "summarize":  # no GPU
        raise SystemExit(summarize(Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent / "handover-state.csv")))
    raise SystemExit(handover() if sys.argv[1] == "handover" else prefill(sys.argv[2]))
