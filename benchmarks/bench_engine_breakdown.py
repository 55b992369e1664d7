"""Where a native engine step spends its time, kernel by kernel and host op by host op (Qwen3-0.6B shape, random
bf16 weights, one GPU): the profile behind the next round of engine work on issue 15's misses.

Steps, each warmed first, then profiled with ``torch.profiler``:
- a 1,024-token prefill (over the largest token bucket: an eager step, the host's ops and the device's kernels),
- a batch-1 decode at KV 512 and a batch-64 decode at KV 2048 (their CUDA graphs' replays: the kernels),
- mixed steps (decodes beside one prompt chunk, replayed from their graphs) next to the decode-only step of the
  same decodes.
For each, the step's wall time and the top entries by device time and by host self time; then the Python functions
that 20 eager prefill steps, and 40 decode steps of each decode batch, spend their host time in (cProfile, by own
time): an eager step is host-bound, and a graph step's host work is what the GPU waits through.
With ``$OUT`` set, the tables also go to ``$OUT/bench_engine_breakdown.txt``. Without a GPU it says so and exits 0.

``--small``: only the small steps a lightly loaded server runs most, which the H200 bundle of 2026-12-02
underpredicted (a 256-token prefill, decodes of 2 and 8 sequences at KV 512): each one's graph kernel by kernel, by
device time and in launch order, beside its wall time (compare with the bundle's ``mlp.csv`` / ``attention.csv``).
It also times a fresh prompt reaching an idle engine, phase by phase, beside its graph's replay alone.
``--cutover N`` (with ``--small``): the engine built with ``matmul.CUTOVER_ROWS = N`` (the one-row matmul and its
fusions up to N rows; shipped: 1), to measure whether extending them speeds up those decodes. ``--unbalanced``: the
engine built without ``attention.BALANCE_SPLITS`` (each decode context cut into equal parts, not its key tiles dealt
out over the launch), to compare.

Run: ``PYTHONPATH=src python3 benchmarks/bench_engine_breakdown.py [--small]`` (about a minute on an H200).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time

import torch

from bench_engine import GRAPH_SIZES, QWEN3_06B, random_state_dict, step_until

ROWS = 18


def _table(prof, sort_by: str) -> str:
    return prof.key_averages().table(sort_by=sort_by, row_limit=ROWS, max_name_column_width=60)


def _kernel_order(prof, count: int) -> str:
    """The first ``count`` kernels in launch order with their device time: which launch of a kernel that runs
    twice a layer (the attention's decode and prefill launches share one name) takes the time."""
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                      and not e.name.startswith(("Memset", "Memcpy"))), key=lambda e: e.time_range.start)
    return "\n".join(f"  {k.time_range.elapsed_us():9.1f} us  {k.name[:90]}" for k in kernels[:count])


def _profile(fn, label: str, out: list[str], order: int = 0) -> None:
    """``order``: also list the first ``order`` kernels of the profiled call in launch order."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    walls = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        fn()
        torch.cuda.synchronize()
        walls.append((time.perf_counter_ns() - t0) / 1e6)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out.append(f"\n==== {label}: wall ms (5 calls, synchronized) {[round(w, 3) for w in walls]}")
    out.append("-- by device time\n" + _table(prof, "cuda_time_total"))
    out.append("-- by host self time\n" + _table(prof, "self_cpu_time_total"))
    if order:
        out.append(f"-- the first {order} kernels in launch order\n" + _kernel_order(prof, order))
    print("\n".join(out[-(4 if order else 3):]), flush=True)


def _cprofile(fn, calls: int, label: str, out: list[str]) -> None:
    """``calls`` calls of ``fn`` under cProfile, the top functions by own time (a graph replay's wait shows as the
    event's ``synchronize``: the rest of a step is the host's)."""
    profiler = cProfile.Profile()
    t0 = time.perf_counter_ns()
    profiler.enable()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    profiler.disable()
    wall = (time.perf_counter_ns() - t0) / calls / 1e6
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    out.append(f"\n==== cProfile: {calls} {label}, by own time ({wall:.3f} ms a call under cProfile)\n"
               + text.getvalue())
    print(out[-1], flush=True)


def main() -> int:
    if not torch.cuda.is_available():
        print("bench_engine_breakdown: no CUDA GPU here; skipped (run it on the GPU machine)")
        return 0
    from gpu_simulate_test.engine.config import EngineConfig, ModelShape
    from gpu_simulate_test.engine.engine import LLMEngine

    out: list[str] = []
    if "--unbalanced" in sys.argv:
        from gpu_simulate_test.engine.kernels import attention

        attention.BALANCE_SPLITS = False
        out.append("attention.BALANCE_SPLITS = False")
    if "--cutover" in sys.argv:
        from gpu_simulate_test.engine.kernels import matmul

        matmul.CUTOVER_ROWS = int(sys.argv[sys.argv.index("--cutover") + 1])
        out.append(f"matmul.CUTOVER_ROWS = {matmul.CUTOVER_ROWS}")
    shape = ModelShape(**QWEN3_06B)
    config = EngineConfig(model=shape, policy="sarathi", max_batch_tokens=8192, max_requests_per_batch=256,
                          block_size=16, num_blocks=None, gpu_memory_utilization=0.5, dtype="bfloat16",
                          device="cuda", cuda_graph_batch_sizes=GRAPH_SIZES)  # default token buckets (<= 512)
    engine = LLMEngine(config, random_state_dict(shape))
    rng, next_id = random.Random(0), [0]

    def prompt(n: int) -> list[int]:
        return [rng.randrange(shape.vocab_size) for _ in range(n)]

    def prefill_step() -> None:  # one fresh request, whole prompt in one chunk, one token out
        engine.add_request(next_id[0], prompt(1024), 1)
        next_id[0] += 1
        engine.step()

    def all_decoding(batch: int, context: int):
        """``batch`` new requests of ``context`` prompt tokens, stepped until one step decodes all of them."""
        for _ in range(batch):
            engine.add_request(next_id[0], prompt(context), 128)
            next_id[0] += 1
        while True:
            step = engine.step()
            if step.batch.is_decode_only and len(step.batch.entries) == batch:
                return step

    def fresh_prompt(n: int, idle_s: float, idle: str = "sleep", reps: int = 9) -> None:
        """A prompt of ``n`` tokens, one token out, reaching an idle engine after ``idle_s``: where its step's wall
        time goes (host phases from the step's start to its launch: scheduling, packing in Python, the packing's
        CUDA calls, the launch; then the wait), beside its graph's replay alone (synchronized wall time, as a step is
        timed). The bundle's fresh prefills missed 0.48-0.67 ms. ``idle``: how the engine's thread spends the idle
        time: ``sleep``; ``poll`` (``time.sleep(0)`` in a loop: the CPU busy); ``gpu`` (the GPU kept busy with
        ``torch.cuda._sleep`` kernels, then synchronised: which of the two a slow start after idle comes from)."""
        runner, marks = engine.runner, {}
        wrapped = ((runner, "prepare"), (runner, "launch"), (runner, "wait"), (runner, "_fill"),
                   (engine.scheduler, "schedule"))

        def marked(name: str, fn):
            def call(*args, **kwargs):
                result = fn(*args, **kwargs)
                marks.setdefault(name, time.perf_counter_ns())
                return result
            return call

        rows = []
        for _ in range(reps):
            until = time.perf_counter() + idle_s
            if idle == "poll":
                while time.perf_counter() < until:
                    time.sleep(0)
            elif idle == "gpu":
                while time.perf_counter() < until:
                    torch.cuda._sleep(1_000_000)  # ~0.5 ms of a spinning kernel at ~2 GHz
                    torch.cuda.synchronize()
            else:
                time.sleep(idle_s)
            engine.add_request(next_id[0], prompt(n), 1)
            next_id[0] += 1
            marks.clear()
            for obj, name in wrapped:
                setattr(obj, name, marked(name, getattr(type(obj), name).__get__(obj)))
            step = engine.step(pipeline=False)
            for obj, name in wrapped:
                delattr(obj, name)
            rows.append((step.end_ns - step.start_ns, marks["schedule"] - step.start_ns,
                         marks["_fill"] - marks["schedule"], marks["prepare"] - marks["_fill"],
                         marks["launch"] - marks["prepare"], step.end_ns - marks["launch"]))
        replay = engine.runner.graphs[step.graph_shape].replay if step.graph_shape else None
        replays = []
        for _ in range(9 if replay else 0):
            torch.cuda.synchronize()
            t0 = time.perf_counter_ns()
            replay()
            torch.cuda.synchronize()
            replays.append(time.perf_counter_ns() - t0)
        med = [statistics.median(r[i] for r in rows[1:]) / 1e3 for i in range(len(rows[0]))]
        rep = statistics.median(replays) / 1e3 if replays else float("nan")
        out.append(f"  {n:5d}  {idle_s * 1e3:4.0f} {idle:<5} {str(step.graph_shape):>10}  "
                   + "  ".join(f"{m:7.0f}" for m in med) + f"  {rep:7.0f}  {med[0] - rep:7.0f}")
        print(out[-1], flush=True)

    if "--small" in sys.argv[1:]:
        out.append("\n==== a fresh prompt reaching an idle engine (medians of 8 steps, us): tokens, idle ms, how "
                   "idle, bucket, step, start->scheduled, ->packed in Python, ->its CUDA calls queued, ->launched, "
                   "->tokens on host, replay alone, step - replay")
        for n in (32, 256, 512):
            for idle_s, idle in ((0.0, "sleep"), (0.05, "sleep"), (0.05, "poll"), (0.05, "gpu")):
                fresh_prompt(n, idle_s, idle)
        for i in range(2):  # the first one warms up
            engine.add_request(next_id[0], prompt(256), 1)
            step = step_until(engine, next_id[0], keep_inputs=True)
            next_id[0] += 1
        _profile(engine.runner.graphs[step.graph_shape].replay,
                 f"graph replay: prefill 256 (bucket {step.graph_shape}; its step {(step.end_ns - step.start_ns) / 1e6:.3f} ms)",
                 out, order=16)
        for batch in (1, 2, 4, 8):
            all_decoding(batch, 512)
            steps = [engine.step(pipeline=i < 19) for i in range(20)]
            ms = statistics.median((s.end_ns - s.start_ns) / 1e6 for s in steps)
            _profile(engine.runner.graphs[steps[-1].graph_shape].replay,
                     f"graph replay: decode batch {batch} KV 512 (its steps: median {ms:.3f} ms)", out, order=16)
            while engine.has_unfinished():
                engine.step()
        _write(out)
        return 0

    prefill_step()
    _profile(prefill_step, "engine.step: prefill 1024 (eager)", out)

    _cprofile(prefill_step, 20, "eager prefill steps of 1024 tokens", out)

    for batch, context in ((1, 512), (64, 2048)):
        step = all_decoding(batch, context)
        graph = engine.runner.graphs[engine.runner.graph_shape(step.batch)]
        _profile(graph.replay, f"graph replay: decode batch {batch} KV {context}", out)
        _profile(engine.step, f"engine.step: decode batch {batch} KV {context}", out)
        # the host's share of a decode step: what is not the wait for the GPU (Event.synchronize in _to_host)
        _cprofile(engine.step, 40, f"decode steps of batch {batch} at KV {context}", out)
        while engine.has_unfinished():
            engine.step()

    # The pipelined step against its graph's replay: what the host still adds to a decode step (the hand-over at
    # each step's end) once packing the next step overlaps the GPU's work on this one.
    out.append("\n==== decode steps (pipelined) vs their graph's replay, KV 1024: batch, step ms (median of 30), "
               "replay ms (median of 20), step - replay us")
    for batch in (1, 16, 64, 128):
        all_decoding(batch, 1024)
        steps = []
        for i in range(30):
            step = engine.step(pipeline=i < 29)  # the last leaves its inputs on the device for the replays
            steps.append((step.end_ns - step.start_ns) / 1e6)
        replay = engine.runner.graphs[step.graph_shape].replay
        replays = []  # wall time with a sync, as a step is timed (not bench_engine._median_ms's device events)
        for _ in range(20):
            torch.cuda.synchronize()
            t0 = time.perf_counter_ns()
            replay()
            torch.cuda.synchronize()
            replays.append((time.perf_counter_ns() - t0) / 1e6)
        s, r = statistics.median(steps), statistics.median(replays)
        out.append(f"  {batch:4d}  {s:7.3f}  {r:7.3f}  {1e3 * (s - r):7.0f}")
        print(out[-1], flush=True)
        while engine.has_unfinished():
            engine.step()

    # Mixed steps: decodes beside one prompt chunk (the H200 bundle of 2026-12-02 measured mixed:256+64x2048 at
    # 8.1 ms against 5.3 for decode:64x2048 alone): what does the engine itself take, and which kernels? Each case's
    # decode-only graph is profiled first (its inputs are those of that step), then the step that adds the chunk,
    # replayed from its graph (or said to be eager), with the first layer's kernels in launch order.
    for decodes, context, chunk in ((64, 2048, 256), (127, 2048, 384), (96, 4096, 64), (12, 1024, 448)):
        decode_shape = engine.runner.graph_shape(all_decoding(decodes, context).batch)
        _profile(engine.runner.graphs[decode_shape].replay, f"graph replay: {decodes} decodes at KV {context}",
                 out, order=12)
        engine.add_request(next_id[0], prompt(chunk), 1)
        step = step_until(engine, next_id[0], keep_inputs=True)
        next_id[0] += 1
        bucket = step.graph_shape
        label = f"mixed: {decodes} decodes at KV {context} + a {chunk}-token chunk"
        out.append(f"\n==== {label}: step {(step.end_ns - step.start_ns) / 1e6:.3f} ms, graph {bucket} "
                   f"(the decode-only step before it: graph {decode_shape})")
        print(out[-1], flush=True)
        if bucket is not None:
            _profile(engine.runner.graphs[bucket].replay, f"graph replay: {label}", out, order=14)
        while engine.has_unfinished():
            engine.step()

    _write(out)
    return 0


def _write(out: list[str]) -> None:
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "bench_engine_breakdown.txt"), "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
