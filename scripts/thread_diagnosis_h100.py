"""Manual: why is the same ``generate`` 2.5-2.8x slower on a worker thread than on the main thread of the H100 host?

The second session's A/B (``generate_timer_h100.py``, in git history at 880aca3; its JSON in
``docs/results/h100-qwen3-0.6b/diagnostics/generate_timer_call{1,5}.json``) showed it: decode step 65.5 against
23.6 ms, thread CPU time equal to wall time, and no such effect on the CPU machine. This splits the cost, for each
place the call can run (main thread, a fresh worker, a fresh worker that first calls ``torch.cuda.set_device`` and
``torch.set_num_threads``, a fresh worker pinned to the CPU the main thread last ran on, one long-lived worker),
into micro-benchmarks that isolate one layer each:
  - ``python``: a pure-Python loop (the interpreter itself);
  - ``cpu_op``: ``torch.empty`` on the CPU (dispatcher and host allocator, no device);
  - ``launch``: an in-place add on a tiny device tensor (dispatcher + kernel launch, no allocation);
  - ``alloc``: a device ``torch.cat`` that grows, as the dynamic KV cache does (device caching allocator);
  - ``decode``: one ``generate`` of 16 tokens on a 256-token prompt, per decode step (the effect itself);
and, once on the main thread and once on a worker, a ``torch.profiler`` trace of a short ``generate`` (top host ops
by self CPU time: where the extra time goes). The whole child is repeated in subprocesses under environment
variants (``MALLOC_ARENA_MAX=1``, ``OMP_NUM_THREADS=1``) in case the host's allocator arenas or OpenMP explain it.

Run on the GPU machine (after ``source scripts/gpu_env.sh``):
    python3 scripts/thread_diagnosis_h100.py --out "$OUT" [--envs default] [--sdpa-kernels '[flash,efficient,cudnn,math]']
The first GPU run (2026-11-23, with cuDNN attention allowed) put the whole gap in ``aten::_cudnn_attention_forward``:
64 us a call on the main thread against 2.6 ms on a fresh worker, whose per-thread cuDNN graph cache was empty.
Prints one table per environment and writes ``<out>/thread_diagnosis.json`` and ``<out>/profile_<where>.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ENVIRONMENTS: dict[str, dict[str, str]] = {
    "default": {},
    "MALLOC_ARENA_MAX=1": {"MALLOC_ARENA_MAX": "1"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--hardware", default="h100")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--envs", default=",".join(ENVIRONMENTS), help=f"comma-separated, of {list(ENVIRONMENTS)}")
    ap.add_argument("--sdpa-kernels", default=None, help="backend.sdpa_kernels override, e.g. '[flash,efficient,cudnn,math]'")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child is not None:
        return _child(args)
    results: dict[str, Any] = {}
    for label in args.envs.split(","):
        env = ENVIRONMENTS[label]
        t = time.monotonic()
        cmd = [sys.executable, __file__, "--out", str(args.out), "--model", args.model, "--hardware", args.hardware,
               "--rounds", str(args.rounds), "--child", label]
        if args.sdpa_kernels is not None:
            cmd += ["--sdpa-kernels", args.sdpa_kernels]
        proc = subprocess.run(cmd, env=os.environ | env, capture_output=True, text=True, timeout=300)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-3000:])
            results[label] = {"error": proc.stderr[-3000:]}
            continue
        results[label] = json.loads((args.out / f"child_{_slug(label)}.json").read_text())
        print(f"({label}: {time.monotonic() - t:.0f} s)")
    (args.out / "thread_diagnosis.json").write_text(json.dumps(results, indent=2))
    return 0


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


class _Worker:
    """One long-lived thread that runs the calls it is given, like real-bench's engine thread."""

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


def _on_thread(fn: Callable[[], Any], prepare: Callable[[], None] | None = None) -> Any:
    box: list[Any] = []

    def body() -> None:
        if prepare is not None:
            prepare()
        box.append(fn())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return box[0]


def _last_cpu(tid: int) -> int | None:
    """The CPU a thread last ran on (field 39 of /proc/<pid>/task/<tid>/stat), None off Linux."""
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[36])


def _child(args: argparse.Namespace) -> int:
    import torch

    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.backends.hf_generate import HFGenerateBackend

    cfg = compose_app("real_bench", [
        f"model={args.model}", f"hardware={args.hardware}", "backend=hf-generate", "workload_id=unused",
        *([f"backend.sdpa_kernels={args.sdpa_kernels}"] if args.sdpa_kernels is not None else [])])
    backend = HFGenerateBackend(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend._max_cache_len = 512
    backend.load()
    dev = backend.device
    sync = backend._sync
    prompt = list(range(10, 266))
    main_threads = torch.get_num_threads()

    def per_call(n: int, body: Callable[[], None], done: Callable[[], None] = lambda: None) -> Callable[[], list[float]]:
        """Microseconds per call of ``body``, as (wall, thread CPU) medians over 5 batches of ``n`` calls."""
        def run() -> list[float]:
            walls, cpus = [], []
            for _ in range(5):
                w, c = time.perf_counter_ns(), time.thread_time_ns()
                for _ in range(n):
                    body()
                done()
                walls.append((time.perf_counter_ns() - w) / n / 1e3)
                cpus.append((time.thread_time_ns() - c) / n / 1e3)
            return [statistics.median(walls), statistics.median(cpus)]
        return run

    x = torch.zeros(16, device=dev)
    grow: list[Any] = [torch.zeros(1, 8, 1, 128, device=dev, dtype=torch.bfloat16)]
    step = torch.zeros(1, 8, 1, 128, device=dev, dtype=torch.bfloat16)

    def cat() -> None:
        grow[0] = torch.cat([grow[0], step], dim=2) if grow[0].shape[2] < 2048 else step.clone()

    def decode() -> list[float]:
        from transformers import LogitsProcessor

        stamps: list[tuple[int, int]] = []

        class Stamp(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                sync()
                stamps.append((time.perf_counter_ns(), time.thread_time_ns()))
                return scores

        with torch.no_grad():
            backend._generate(prompt, 16, Stamp())
        walls = [(b[0] - a[0]) / 1e3 for a, b in zip(stamps[1:], stamps[2:])]
        cpus = [(b[1] - a[1]) / 1e3 for a, b in zip(stamps[1:], stamps[2:])]
        return [statistics.median(walls), statistics.median(cpus)]

    def python_loop() -> None:
        s = 0
        for i in range(1000):
            s += i

    benches: dict[str, Callable[[], list[float]]] = {
        "python (us / 1000 adds)": per_call(200, python_loop),
        "cpu_op (us / torch.empty)": per_call(2000, lambda: torch.empty(64)),
        "launch (us / add_)": per_call(2000, lambda: x.add_(1), sync),
        "alloc (us / device cat)": per_call(500, cat, sync),
        "decode (us / step)": decode,
    }

    def prepare() -> None:
        if torch.device(dev).type == "cuda":
            torch.cuda.set_device(dev)
        torch.set_num_threads(main_threads)

    def pin() -> None:
        cpu = _last_cpu(threading.main_thread().native_id)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})  # 0 = the calling thread

    long_lived = _Worker()
    places: dict[str, Callable[[Callable[[], Any]], Any]] = {
        "main": lambda fn: fn(),
        "fresh worker": lambda fn: _on_thread(fn),
        "fresh worker, set_device + set_num_threads": lambda fn: _on_thread(fn, prepare),
        "fresh worker pinned to main's CPU": lambda fn: _on_thread(fn, pin),
        "long-lived worker": long_lived.call,
    }
    for place in places.values():  # warm-up: every bench once in every place
        for fn in benches.values():
            place(fn)
    samples: dict[str, dict[str, list[list[float]]]] = {b: {p: [] for p in places} for b in benches}
    for _ in range(args.rounds):
        for bname, fn in benches.items():
            for pname, place in places.items():
                samples[bname][pname].append(place(fn))
    table = {b: {p: {"wall_us": statistics.median(v[0] for v in vs), "cpu_us": statistics.median(v[1] for v in vs)}
                 for p, vs in ps.items()} for b, ps in samples.items()}
    print(f"== {args.child}, SDPA kernels {backend.sdpa_kernels}: medians of {args.rounds} interleaved rounds, wall us (thread CPU us)")
    print("| bench | " + " | ".join(places) + " |\n| --- |" + " ---: |" * len(places))
    for b, ps in table.items():
        print(f"| {b} | " + " | ".join(f"{v['wall_us']:.1f} ({v['cpu_us']:.1f})" for v in ps.values()) + " |")

    profiles: dict[str, Any] = {}
    if args.child == "default":
        for where, place in (("main", places["main"]), ("worker", places["fresh worker"])):
            profiles[where] = place(lambda: _profile(backend, prompt, sync, args.out / f"profile_{where}.txt"))
        _print_profile_diff(profiles)
    long_lived.close()
    threads = [t.name for t in threading.enumerate()]
    out = {"env": args.child, "sdpa_kernels": backend.sdpa_kernels, "table": table, "profiles": profiles, "python_threads": threads,
           "switch_interval_s": sys.getswitchinterval(), "torch_num_threads": main_threads,
           "affinity": sorted(os.sched_getaffinity(0)), "python": sys.version, "torch": torch.__version__}
    (args.out / f"child_{_slug(args.child)}.json").write_text(json.dumps(out, indent=2))
    return 0


def _profile(backend: Any, prompt: list[int], sync: Any, path: Path) -> dict[str, list[float]]:
    """Profile an 8-token ``generate`` on the calling thread; return {op: [count, self CPU us]} for the top ops."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    def hook() -> Any:
        from transformers import LogitsProcessor

        class Sync(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                sync()
                return scores

        return Sync()

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with torch.no_grad():
            backend._generate(prompt, 8, hook())
    avg = prof.key_averages()
    path.write_text(avg.table(sort_by="self_cpu_time_total", row_limit=40))
    rows = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:40]
    out = {e.key: [e.count, float(e.self_cpu_time_total)] for e in rows}
    out["__total_self_cpu_us"] = [0, float(sum(e.self_cpu_time_total for e in avg))]
    out["__total_device_us"] = [0, float(sum(getattr(e, "self_device_time_total", 0) for e in avg))]
    return out


def _print_profile_diff(profiles: dict[str, Any]) -> None:
    main, worker = profiles["main"], profiles["worker"]
    keys = sorted(set(main) | set(worker), key=lambda k: -(worker.get(k, [0, 0])[1] - main.get(k, [0, 0])[1]))
    print("| op (profiled 8-token generate) | main count | main self CPU us | worker count | worker self CPU us |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k in keys[:20]:
        m, w = main.get(k, [0, 0]), worker.get(k, [0, 0])
        print(f"| {k} | {m[0]} | {m[1]:.0f} | {w[0]} | {w[1]:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
