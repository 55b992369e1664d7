"""Manual: does vidur-profile's hf-generate timer see the same decode step as real-bench's hf-generate?

The H100 bundle measured 84-105 ms per decode step where real-bench measured a median of 28 ms. This alternates,
in one process and on one model, the profiler's ``GenerateTimer`` and real-bench's ``HFGenerateBackend._generate``
on the same 256-token prompt, plus the two crossed variants (profiler path under ``no_grad``, real-bench path under
``inference_mode``) and the real-bench path on a worker thread as real-bench runs it. Per decode step it records wall
time (``perf_counter_ns``) and the calling thread's CPU time (``thread_time_ns``): equal interleaved medians point at
the machine, a steady gap at the code path; wall far above CPU time means the thread waited (GPU or starved).
Two more variants split the worker-thread effect: a fresh thread pinned to the main thread's CPU, and one long-lived
worker fed through a queue (real-bench's layout); the JSON also records CPUs, cgroup quota and GPU topology.

Run on the GPU machine (after ``source tests/manual/gpu_env.sh``):
    python3 tests/manual/generate_timer_h100.py --out "$OUT" [--rounds 5 --tokens 32]
Prints one table and writes ``<out>/generate_timer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable


def _stamper(sync: Callable[[], None], wall: list[int], cpu: list[int]) -> Any:
    from transformers import LogitsProcessor

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            sync()
            wall.append(time.perf_counter_ns())
            cpu.append(time.thread_time_ns())
            return scores

    return Stamp()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--hardware", default="h100")
    args = ap.parse_args()

    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from transformers import LogitsProcessorList

    from gpu_simulate_test.cli._app import CONFIG_DIR
    from gpu_simulate_test.real_bench.backends.hf_generate import HFGenerateBackend
    from gpu_simulate_test.vidur_ext.profiler.iterations import GenerateTimer, _prompt

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="real_bench", overrides=[
            f"model={args.model}", f"hardware={args.hardware}", "backend=hf-generate", "workload_id=unused"]))
    backend = HFGenerateBackend(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend._max_cache_len = args.prompt + args.tokens
    backend.load()
    timer = GenerateTimer(backend.model, cfg.backend, args.tokens)
    prompt = _prompt(args.prompt, backend.model.config.vocab_size, args.prompt)
    ids = torch.tensor([prompt], device=backend.model.device)

    def run_profiler(grad_mode: Any) -> tuple[list[int], list[int]]:
        wall: list[int] = []
        cpu: list[int] = []
        with grad_mode():
            timer._generate(ids, args.tokens, LogitsProcessorList([_stamper(timer.sync, wall, cpu)]))
        return wall, cpu

    def run_bench(grad_mode: Any) -> tuple[list[int], list[int]]:
        wall: list[int] = []
        cpu: list[int] = []
        with grad_mode():
            backend._generate(prompt, args.tokens, _stamper(backend._sync, wall, cpu))
        return wall, cpu

    def on_thread(fn: Callable[[], tuple[list[int], list[int]]], pin: bool = False) -> tuple[list[int], list[int]]:
        """A fresh thread per call; ``pin``: on the CPU the main thread last ran on (Linux only)."""
        box: list[Any] = []
        cpu = _last_cpu(threading.main_thread().native_id) if pin else None

        def body() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # 0 = the calling thread
            box.append(fn())

        t = threading.Thread(target=body)
        t.start()
        t.join()
        return box[0]

    persistent = _Worker()  # one long-lived thread fed through a queue, as real-bench's engine thread

    variants: dict[str, Callable[[], tuple[list[int], list[int]]]] = {
        "profiler (inference_mode, main thread)": lambda: run_profiler(torch.inference_mode),
        "real-bench (no_grad, main thread)": lambda: run_bench(torch.no_grad),
        "profiler path under no_grad": lambda: run_profiler(torch.no_grad),
        "real-bench path under inference_mode": lambda: run_bench(torch.inference_mode),
        "real-bench (no_grad, worker thread)": lambda: on_thread(lambda: run_bench(torch.no_grad)),
        "real-bench, worker pinned to main's CPU": lambda: on_thread(lambda: run_bench(torch.no_grad), pin=True),
        "real-bench, long-lived worker (as real-bench)": lambda: persistent.call(lambda: run_bench(torch.no_grad)),
        "profiler measure() as the bundle calls it": lambda: _measure_as_bundle(timer),
    }
    for fn in variants.values():  # warm-up: every path once
        fn()
    samples: dict[str, dict[str, list[float]]] = {k: {"wall_ms": [], "cpu_ms": []} for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            wall, cpu = fn()
            samples[name]["wall_ms"] += [(b - a) / 1e6 for a, b in zip(wall[1:], wall[2:])]  # decode steps only
            samples[name]["cpu_ms"] += [(b - a) / 1e6 for a, b in zip(cpu[1:], cpu[2:])]
    print(f"decode steps, prompt {args.prompt}, {args.tokens} tokens, {args.rounds} interleaved rounds; ms")
    print("| variant | wall p50 | wall p10 | wall p90 | thread CPU p50 |\n| --- | ---: | ---: | ---: | ---: |")
    table = {}
    for name, s in samples.items():
        w = sorted(s["wall_ms"])
        row = {"wall_p50": statistics.median(w), "wall_p10": w[len(w) // 10], "wall_p90": w[(9 * len(w)) // 10],
               "cpu_p50": statistics.median(s["cpu_ms"]) if s["cpu_ms"] else None, "n": len(w)}
        table[name] = row
        cpu = f"{row['cpu_p50']:.2f}" if row["cpu_p50"] is not None else "-"
        print(f"| {name} | {row['wall_p50']:.2f} | {row['wall_p10']:.2f} | {row['wall_p90']:.2f} | {cpu} |")
    persistent.close()
    env = _environment()
    print(json.dumps({k: env[k] for k in ("cpu_count", "affinity", "cgroup_cpu_max")}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate_timer.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "table": table, "environment": env}, indent=2))
    return 0


class _Worker:
    """One thread that runs the calls it is given, one at a time, like real-bench's engine thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._done: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._done.put(job())

    def call(self, fn: Callable[[], Any]) -> Any:
        self._jobs.put(fn)
        return self._done.get()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def _last_cpu(tid: int) -> int | None:
    """The CPU a thread last ran on (field 39 of /proc/<pid>/task/<tid>/stat), None off Linux."""
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[36])


def _environment() -> dict[str, Any]:
    """What the host gives this process: CPUs, cgroup quota, GPU/NUMA topology (for reading the table)."""
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            return f"unavailable: {exc}"

    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    return {
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cgroup_cpu_max": cpu_max.read_text().strip() if cpu_max.is_file() else None,
        "nvidia_smi_topo": run(["nvidia-smi", "topo", "-m"]),
        "lscpu": run(["lscpu"]),
    }


def _measure_as_bundle(timer: Any) -> tuple[list[int], list[int]]:
    """The bundle's own call (``measure``) returns step times only; rebuild stamps from them for the table."""
    from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

    t = time.thread_time_ns()
    steps = timer.measure(BatchShape.parse("decode:1x256"))
    cpu_per_step = (time.thread_time_ns() - t) / (len(steps) + 3)
    wall = [0, 0]
    for s in steps:
        wall.append(wall[-1] + int(s))
    cpu = [0, 0] + [int(cpu_per_step * (i + 1)) for i in range(len(steps))]
    return wall, cpu


if __name__ == "__main__":
    raise SystemExit(main())
