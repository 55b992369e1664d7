"""``backend=native`` on a GPU at the Qwen3-0.6B shape (random bf16 weights, no download): real-bench end to end with
the KV pool sized from ``gpu_memory_utilization``, nothing captured or compiled while the clock runs, and
vidur-profile's operator source replaying each engine op as a CUDA graph. Run:
``pytest -m gpu tests/gpu/test_native_gpu.py -s`` (``-s`` prints the step and operator times)."""

from __future__ import annotations

import gc
import math
import random
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.testing import make_workload

pytestmark = pytest.mark.gpu  # tests/gpu/conftest.py skips it without a GPU

GPU = ["model=qwen3-0.6b", "model.weights=random", "hardware=h200", "backend=native"]


def _requests(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Arrivals 4 ms apart on average, prompts of 50-1500 tokens, 10-200 tokens out: chunked prefills beside
    decode batches of every size."""
    rng = random.Random(seed)
    t, out = 0, []
    for _ in range(n):
        t += int(rng.expovariate(1 / 4e6))
        out.append((t, rng.randint(50, 1500), rng.randint(10, 200)))
    return out


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def test_real_bench_native_on_the_gpu(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    from gpu_simulate_test.real_bench.run import run_real_bench

    _free()
    requests = _requests(64)
    make_workload(tmp_path / "workloads", "w", requests, vocab=150_000)
    # token buckets up to 32 only: steps with a longer prefill chunk run eagerly, so the run takes both paths
    cfg = compose_app("real_bench", ["workload_id=w", *GPU, "backend.gpu_memory_utilization=0.6",
                                     "backend.cuda_graph_token_sizes=[16,32]"])
    run = load_run(run_real_bench(cfg), "real_run")
    _free()
    meta, stats = run.meta, run.meta["engine_stats"]
    print("\nbackend:", meta["backend"])
    print("engine_stats:", stats)
    assert run.complete and len(run.requests) == len(requests)
    assert stats["cuda_graph_captures_during_run"] == 0 and stats["compilations_during_run"] == 0
    engine = stats["engine"]
    assert engine["kernel_path"] == "triton" and engine["graph_steps"] > 0 and engine["eager_steps"] > 0
    plan = meta["backend"]["memory"]
    assert plan is not None and meta["backend"]["num_blocks"] > 10_000  # 0.6 x 141 GB at 112 KiB a token
    assert plan["blocks_that_fit"] >= meta["backend"]["num_blocks"]
    it = run.iterations
    decode_only = it[it["num_prefill_tokens"] == 0]
    step_ms = (decode_only["end_time_ns"] - decode_only["start_time_ns"]) / 1e6
    by_batch = step_ms.groupby(decode_only["batch_size"]).median()
    print("decode step ms (median) by batch size:", by_batch.round(3).to_dict())
    print("dispatch lateness:", meta["dispatch_lateness"])
    kv = [list(map(int, s.split(";"))) for s in it["kv_tokens"]]
    assert all(len(k) == len(parse_requests_field(r)) for k, r in zip(kv, it["requests"]))
    assert (run.requests["num_decode_tokens_actual"] == run.requests["num_decode_tokens"]).all()


def test_profiler_replays_each_engine_op_as_a_graph(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """Every op vidur-profile times for native runs as a CUDA graph replay over consecutive layers (each on its own
    weights; all of them for a short op), at decode and prefill shapes; a short op costs its kernel, not a graph
    launch (~7 us)."""
    from gpu_simulate_test.backends.native import NativeBackend
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_call
    from gpu_simulate_test.workloads.load import load_workload

    _free()
    make_workload(tmp_path / "workloads", "w", [(0, 100, 10)], vocab=150_000)
    # 4096 blocks: the op inputs use the engine's own pool up to that, a fresh cache beyond (decode 128 x 2048)
    cfg = compose_app("real_bench", ["workload_id=w", *GPU, "backend.num_blocks=4096"])
    backend = NativeBackend(cfg.backend, cfg.model, cfg.hardware, 0)
    try:
        backend.check_workload(load_workload(tmp_path / "workloads", "w"))
        backend.load()
        ops = EngineLayerOps(backend.native_engine())
        assert ops.attention_backend == "native-triton"
        method, sync = TimingMethod(2, 5, 10), torch.cuda.synchronize
        layers = len(backend.native_engine().model.layers)

        def us_per_call(fn: Any, short: bool = False) -> float:
            if hasattr(fn, "measure"):  # a token op, timed in its layer: the whole layer's graph with and without it
                return float(fn.measure(sync, method).mean() * 1e3)
            # one replay runs the op for consecutive layers: a short op (one call ~2-7 us, its graph's replay at
            # least a launch, <= ~14 us) for at least REPLAY_TARGET_US / 14 of them
            assert 1 <= fn.calls_per_run <= layers and (fn.calls_per_run >= 14 or not short), fn.calls_per_run
            return float(time_call(fn, sync, method).mean() / fn.calls_per_run * 1e3)

        with torch.inference_mode():
            for n in (1, 128, 2048):
                token_ops = ops.token_ops(n)
                # fused into another op, no cost of their own: the residual add and the KV store always; at one
                # token also the two norms (inside the projections they feed) and the activation (inside down)
                fused = {name for name, fn in token_ops.items() if fn is None}
                assert fused == ({"add", "input_layernorm", "post_attention_layernorm", "mlp_act"} if n == 1
                                 else {"add"}), fused
                assert ops.kv_cache_save(n, n) is None
                times = {name: us_per_call(fn, short=n <= 128) for name, fn in token_ops.items() if name not in fused}
                print(f"\ntokens {n}: us per op", {k: round(v, 1) for k, v in times.items()})
                assert all(math.isfinite(v) and v > 0 for v in times.values())
                if n == 128:  # a fused add + RMSNorm of 128 x 1,024 moves 0.8 MB: ~2 us, under a graph launch
                    assert times["input_layernorm"] < 5.0, times
                # timed in their layer, the ops and the attention between them add up to the layer: what Vidur sums
                seq = next(fn for fn in token_ops.values() if fn is not None).seq
                layer_us = float(time_call(seq._full, sync, method).mean() / layers * 1e3)
                attention_us = float(seq.measure(None, sync, method).mean() * 1e3)
                print(f"tokens {n}: layer {layer_us:.1f} us, its ops {sum(times.values()):.1f} + attention "
                      f"{attention_us:.1f}")
                assert abs(sum(times.values()) + attention_us - layer_us) < 0.1 * layer_us
            for name, fn in (("decode 1x8192", ops.decode(1, 8192)), ("decode 64x2048", ops.decode(64, 2048)),
                             ("decode 128x2048", ops.decode(128, 2048)), ("prefill 2048+0", ops.prefill(2048, 0)),
                             ("prefill 512+4096", ops.prefill(512, 4096))):
                us = us_per_call(fn)
                print(f"{name}: {us:.1f} us")
                assert math.isfinite(us) and us > 0
            # the step outside its layers (the head variant's term): the LM head reads its 311 MB, ~70 us at the
            # H200's bandwidth, whatever the rows; embeddings, the final norm and the argmax add a few us
            for n, rows in ((1, 1), (8, 8), (512, 128)):
                us = us_per_call(ops.outside_layers(n, rows))
                print(f"outside the layers, {n} tokens, {rows} rows: {us:.1f} us")
                assert 40 < us < 400, us
            # one wave of the prefill launch (the one_wave reading of a step's chunks): one bf16 program of 8 warps
            # an SM, 64 query tokens a program (128 rows over Qwen3's GQA group of 2)
            sms = torch.cuda.get_device_properties(ops.device).multi_processor_count
            assert ops.prefill_wave() == (sms // ops.shape.num_kv_heads, 64), ops.prefill_wave()
            # the graph buckets a step is padded to (token_rows: graph_bucket): the runner's, captured at start-up
            seqs, tokens = ops.graph_buckets()
            assert seqs and tokens and seqs == sorted(seqs) and tokens == sorted(tokens), (seqs, tokens)
    finally:
        backend.close()
        _free()


def test_step_probe_measures_the_host_share_on_the_gpu(compose_app: Callable[..., Any]) -> None:
    """vidur-profile's ``StepProbe`` on the engine's runner while ``StepTimer`` times shapes: every timed step's device
    time (launch to last op, CUDA events) below its wall time, and how the engine packed it: a prompt on an idle
    engine and a prompt joining running decodes packed at their step's start (their host share: the scheduling and
    packing, ~0.3-0.4 ms), a decode batch ahead (the hand-over, ~40 us)."""
    import numpy as np

    from gpu_simulate_test.backends import get_backend
    from gpu_simulate_test.backends.recorder import Recorder, RunClock
    from gpu_simulate_test.vidur_ext.profiler.host_share import StepProbe
    from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer
    from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

    _free()
    cfg = compose_app("vidur_profile", [*GPU, "backend.gpu_memory_utilization=0.3"])
    shapes = [BatchShape.parse(s) for s in ("prefill:256", "decode:8x512", "mixed:256+8x512")]
    timer = StepTimer(cfg.backend, shapes, 6)
    backend = get_backend("native")(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend.check_workload(timer.plan())
    backend.load()
    try:
        recorder = Recorder([], RunClock())
        with StepProbe(backend.native_engine()) as probe:
            backend.start(recorder)
            got = {str(s): timer.measure(backend, recorder, s, probe) for s in shapes}
            with probe.untimed():  # the walls a run has: no events around the launches
                bare = timer.measure(backend, recorder, shapes[1], probe)
        assert len(probe.records()) == recorder.num_steps
        assert bare.device_ns is None and bare.at_start is not None and not bare.at_start.any() and (bare.ns > 0).all()
    finally:
        backend.close()
        _free()
    host_us = {}
    for name, x in got.items():
        host = (x.ns - x.device_ns) / 1e3
        host_us[name] = float(np.median(host))
        print(f"{name}: wall {np.median(x.ns) / 1e3:.0f} us, device {np.median(x.device_ns) / 1e3:.0f} us, host "
              f"{host_us[name]:.0f} us, packed at start {x.at_start.mean():.2f}")
        assert (x.device_ns > 0).all() and (host > -20).all() and host_us[name] < 0.5 * np.median(x.ns) / 1e3
    assert got["prefill:256"].at_start.all() and got["mixed:256+8x512"].at_start.all()
    assert not got["decode:8x512"].at_start.any()
    assert host_us["mixed:256+8x512"] > 2 * host_us["decode:8x512"]  # packing at the start costs more than the hand-over
