"""The native engine on one GPU at the Qwen3-0.6B shape (random bf16 weights): issue 15's acceptance benchmark.

In one process: the two ceilings first (copy bandwidth, counting bytes read + written, and the bf16 8192^3 matmul
rate); then decode steps at batches 1, 8, 32, 64, 128 x KV 512, 2048, 8192 (the whole engine step, schedule +
forward + sample, and the graph replay alone, each next to its memory floor: the weights once plus every context
token's K/V at the measured bandwidth, and the kernels per step); prefill tokens/s at chunks 512, 2048, 8192 next
to the compute floor (2 x non-embedding parameters per token plus causal attention, the LM head on the last token),
each saying whether it ran from a CUDA graph (bucket, replay time); a mixed step (32 decodes at KV 2048 beside a
480-token chunk, graph or eager); and an offline throughput run (256 requests, prompt and output lengths uniform in 100-1024). The table is printed
last; with ``$OUT`` set the numbers also go to ``$OUT/bench_engine.json``. Without a GPU it says so and exits 0.

Run: ``PYTHONPATH=src python3 benchmarks/bench_engine.py`` (about 3-6 minutes on an H200).
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time

import torch

QWEN3_06B = dict(hidden_size=1024, num_layers=28, num_attention_heads=16, num_kv_heads=8, head_dim=128,
                 intermediate_size=3072, vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)
BATCHES = (1, 8, 32, 64, 128)
CONTEXTS = (512, 2048, 8192)
CHUNKS = (512, 2048, 8192)
WARM_STEPS, STEPS, REPLAYS = 3, 20, 50
GRAPH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)
PUBLISHED = {"vLLM 0.10.2 (A800)": 8588, "nano-vllm-triton (A800)": 10009}  # output tok/s, Qwen3-0.6B


def _median_ms(fn, reps: int) -> float:
    """Median of ``reps`` event-timed calls of ``fn`` (after two warm ones)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def ceilings() -> dict:
    """Copy bandwidth (bytes read + written per second) and the bf16 matmul rate, measured here."""
    n = 1 << 30  # 2 GiB of bf16 each way
    src = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    copy_ms = _median_ms(lambda: dst.copy_(src), 20)
    del src, dst
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    c = torch.empty_like(a)
    mm_ms = _median_ms(lambda: torch.mm(a, b, out=c), 20)
    del a, b, c
    torch.cuda.empty_cache()
    return {"copy_bytes_per_s": 2 * 2 * n / (copy_ms / 1e3), "matmul_flop_per_s": 2 * 8192**3 / (mm_ms / 1e3)}


def random_state_dict(shape, seed: int = 0, device: str = "cuda") -> dict:
    """A transformers ``Qwen3ForCausalLM`` state dict of random bf16 weights on the GPU (never zeros); ``device``
    "cpu": a script's check off the GPU."""
    g = torch.Generator(device=device).manual_seed(seed)
    s = shape
    q, kv = s.num_attention_heads * s.head_dim, s.num_kv_heads * s.head_dim

    def w(*size):
        return (torch.randn(*size, device=device, generator=g, dtype=torch.float32) * 0.02).to(torch.bfloat16)

    def norm(n):
        return (1 + 0.1 * torch.randn(n, device=device, generator=g)).to(torch.bfloat16)

    sd = {"model.embed_tokens.weight": w(s.vocab_size, s.hidden_size), "model.norm.weight": norm(s.hidden_size)}
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        sd.update({p + "self_attn.q_proj.weight": w(q, s.hidden_size),
                   p + "self_attn.k_proj.weight": w(kv, s.hidden_size),
                   p + "self_attn.v_proj.weight": w(kv, s.hidden_size),
                   p + "self_attn.o_proj.weight": w(s.hidden_size, q),
                   p + "self_attn.q_norm.weight": norm(s.head_dim), p + "self_attn.k_norm.weight": norm(s.head_dim),
                   p + "mlp.gate_proj.weight": w(s.intermediate_size, s.hidden_size),
                   p + "mlp.up_proj.weight": w(s.intermediate_size, s.hidden_size),
                   p + "mlp.down_proj.weight": w(s.hidden_size, s.intermediate_size),
                   p + "input_layernorm.weight": norm(s.hidden_size),
                   p + "post_attention_layernorm.weight": norm(s.hidden_size)})
    return sd


def count_kernels(fn) -> int:
    """Kernels one call of ``fn`` launches on the GPU (graph replays included), from the profiler's trace."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA
               and not e.name.startswith(("Memcpy", "Memset", "[memory]")))


def decode_point(engine, batch: int, context: int, bw: float, rng: random.Random, next_id: list[int]) -> dict:
    """``batch`` requests of ``context`` prompt tokens, prefilled through the engine; once all of them decode,
    WARM_STEPS + STEPS whole steps and REPLAYS replays of the step's graph."""
    shape = engine.config.model
    # sarathi decodes the first admitted while it prefills the rest, from the budget the decodes leave
    prefill_steps = math.ceil(batch * context / (engine.config.max_batch_tokens - batch))
    max_tokens = prefill_steps + WARM_STEPS + STEPS + 4
    need = batch * math.ceil((context + max_tokens) / engine.config.block_size)
    if need > engine.num_blocks * 0.98:
        return {"batch": batch, "context": context,
                "skipped": f"needs {need} KV blocks, the pool has {engine.num_blocks}"}
    for _ in range(batch):
        engine.add_request(next_id[0], [rng.randrange(shape.vocab_size) for _ in range(context)], max_tokens)
        next_id[0] += 1
    step_ms, last = [], None
    while len(step_ms) < WARM_STEPS + STEPS:
        if not engine.has_unfinished():
            raise RuntimeError(f"batch {batch} at KV {context}: the requests finished before all of them decoded")
        # the last one returns with nothing in flight: its inputs stay on the device for the replays below
        out = engine.step(pipeline=len(step_ms) < WARM_STEPS + STEPS - 1)
        if out.batch.is_decode_only and len(out.batch.entries) == batch:
            step_ms.append((out.end_ns - out.start_ns) / 1e6)
            last = out
    kv_tokens = sum(e.context_len for e in last.entries)
    floor_ms = (engine.model.num_bytes + kv_tokens * shape.kv_bytes_per_token * 2) / bw * 1e3
    row = {"batch": batch, "context": context, "mean_context": kv_tokens / batch, "floor_ms": floor_ms,
           "step_ms": statistics.median(step_ms[WARM_STEPS:]), "cuda_graph": last.cuda_graph}
    shape = engine.runner.graph_shape(last.batch)
    kernels = 0
    if shape is not None:
        graph = engine.runner.graphs[shape]
        row["replay_ms"] = _median_ms(graph.replay, REPLAYS)  # the last step's inputs, written again in place
        kernels = count_kernels(graph.replay)
        row["kernels_counted_in"] = "graph replay"
    if not kernels:  # eager, or a profiler that does not see inside graphs: the same step run eagerly
        kernels = count_kernels(lambda: engine.runner.run(last.batch, allow_graph=False))
        row["kernels_counted_in"] = "eager step"
    row["kernels_per_step"] = kernels
    row["step_over_floor"] = row["step_ms"] / floor_ms
    if "replay_ms" in row:
        row["replay_over_floor"] = row["replay_ms"] / floor_ms
    while engine.has_unfinished():
        engine.step()
    return row


def prefill_flops(shape, tokens: int) -> float:
    """One fresh prompt of ``tokens``: 2 x non-embedding parameters per token, causal QK^T and PV, the LM head on
    the last token."""
    s = shape
    q, kv = s.num_attention_heads * s.head_dim, s.num_kv_heads * s.head_dim
    per_layer = s.hidden_size * (q + 2 * kv) + q * s.hidden_size + 3 * s.hidden_size * s.intermediate_size
    attention = 2 * 2 * q * tokens * (tokens + 1) / 2 * s.num_layers
    return 2 * per_layer * s.num_layers * tokens + attention + 2 * s.hidden_size * s.vocab_size


def prefill_point(engine, chunk: int, mm_rate: float, rng: random.Random, next_id: list[int]) -> dict:
    times = []
    for _ in range(6):  # the first is a warm one
        engine.add_request(next_id[0], [rng.randrange(engine.config.model.vocab_size) for _ in range(chunk)], 1)
        next_id[0] += 1
        out = engine.step()
        assert out.entries[0].num_tokens == chunk and out.finished
        times.append((out.end_ns - out.start_ns) / 1e9)
    t = statistics.median(times[1:])
    flops = prefill_flops(engine.config.model, chunk)
    row = {"chunk": chunk, "tokens_per_s": chunk / t, "step_ms": t * 1e3, "floor_ms": flops / mm_rate * 1e3,
           "fraction_of_matmul_rate": flops / t / mm_rate, "cuda_graph": out.cuda_graph}
    _add_replay(engine, out.batch, row)
    return row


def _add_replay(engine, batch, row: dict) -> None:
    """The bucket and replay time of the step's graph, when it ran from one (the last inputs, written again)."""
    shape = engine.runner.graph_shape(batch)
    if shape is not None:
        row["graph_shape"] = list(shape)
        row["replay_ms"] = _median_ms(engine.runner.graphs[shape].replay, REPLAYS)


def mixed_point(engine, decodes: int, context: int, chunk: int, rng: random.Random, next_id: list[int]) -> dict:
    """``decodes`` requests decoding at KV ``context`` beside one fresh ``chunk``-token prompt (sarathi: the
    decodes, then the whole prompt as one chunk): the whole step (median of 5 after a warm one) and its replay."""
    vocab = engine.config.model.vocab_size
    prefill_steps = math.ceil(decodes * context / (engine.config.max_batch_tokens - decodes))
    for _ in range(decodes):
        engine.add_request(next_id[0], [rng.randrange(vocab) for _ in range(context)], prefill_steps + 20)
        next_id[0] += 1
    while True:  # until all of them decode
        out = engine.step()
        if out.batch.is_decode_only and len(out.batch.entries) == decodes:
            break
    times = []
    for i in range(6):
        engine.add_request(next_id[0], [rng.randrange(vocab) for _ in range(chunk)], 1)
        out = step_until(engine, next_id[0], keep_inputs=i == 5)
        next_id[0] += 1
        if len(out.entries) != decodes + 1 or out.entries[-1].num_tokens != chunk:
            raise RuntimeError(f"mixed point: expected {decodes} decodes and a {chunk}-token chunk, got "
                               f"{[(e.num_tokens, e.is_prefill) for e in out.entries][-3:]}")
        times.append((out.end_ns - out.start_ns) / 1e6)
    row = {"decodes": decodes, "context": context, "chunk": chunk, "step_ms": statistics.median(times[1:]),
           "cuda_graph": out.cuda_graph}
    _add_replay(engine, out.batch, row)
    while engine.has_unfinished():
        engine.step()
    return row


def step_until(engine, request_id: int, keep_inputs: bool = False):
    """Step until the iteration that holds ``request_id`` and return it. ``keep_inputs``: it returns with nothing
    in flight, so its inputs stay on the device (its graph's replay reads them)."""
    while True:
        flight = engine.in_flight
        holds = flight is None or any(e.seq.seq_id == request_id for e in flight.entries)
        out = engine.step(pipeline=not (keep_inputs and holds))
        if any(e.request_id == request_id for e in out.entries):
            return out


def throughput_run(engine, rng: random.Random, next_id: list[int], n: int = 256) -> dict:
    reqs = [(rng.randint(100, 1024), rng.randint(100, 1024)) for _ in range(n)]
    vocab = engine.config.model.vocab_size
    prompts = [[rng.randrange(vocab) for _ in range(p)] for p, _ in reqs]
    before = engine.stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for prompt, (_, out) in zip(prompts, reqs):
        engine.add_request(next_id[0], prompt, out)
        next_id[0] += 1
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
    seconds = time.perf_counter() - start
    after = engine.stats()
    out_tokens = sum(o for _, o in reqs)
    return {"requests": n, "seconds": seconds, "output_tokens": out_tokens, "output_tokens_per_s": out_tokens / seconds,
            "total_tokens_per_s": (out_tokens + sum(p for p, _ in reqs)) / seconds, "steps": steps,
            "graph_steps": after["graph_steps"] - before["graph_steps"],
            "preemptions": after["preemptions"] - before["preemptions"], "published_output_tokens_per_s": PUBLISHED}


def _graph_cell(row: dict) -> str:
    if not row["cuda_graph"]:
        return f"{'eager':>10} {'':>9}"
    return f"{str(tuple(row['graph_shape'])):>10} {row['replay_ms']:>9.3f}"


def verdicts(decode: list[dict], prefill: list[dict]) -> list[str]:
    """Issue 15's required and aimed-at figures, each with its measured value."""
    lines = []

    def check(kind, name, value, limit, ok):
        lines.append(f"{kind:8s} {name}: {value:.3g} (limit {limit}) {'ok' if ok else 'MISSED'}")

    rows = {(r["batch"], r["context"]): r for r in decode if "skipped" not in r}
    for (b, c), r in sorted(rows.items()):
        if b == 1:
            check("required", f"batch 1 KV {c} whole step ms", r["step_ms"], "1.2", r["step_ms"] <= 1.2)
            if "replay_over_floor" in r:
                ratio = r["replay_over_floor"]
                check("aimed", f"batch 1 KV {c} replay / floor", ratio, "3", ratio <= 3)
        ratio = r["step_over_floor"]
        if b >= 32 and c >= 2048:
            limit = 1.5 if b >= 64 else 2.0
            check("required", f"batch {b} KV {c} step / floor", ratio, limit, ratio <= limit)
        if b >= 64 and c >= 2048:
            check("aimed", f"batch {b} KV {c} step / floor", ratio, "1.25", ratio <= 1.25)
    for r in prefill:
        if r["chunk"] >= 2048:
            f = r["fraction_of_matmul_rate"]
            check("aimed", f"prefill chunk {r['chunk']} fraction of matmul rate", f, "0.5", f >= 0.5)
    return lines


def main() -> int:
    if not torch.cuda.is_available():
        print("bench_engine: no CUDA GPU here; skipped (run it on the GPU machine)")
        return 0
    from gpu_simulate_test.engine.config import EngineConfig, ModelShape
    from gpu_simulate_test.engine.engine import LLMEngine

    t0 = time.perf_counter()
    result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        pass
    result.update(ceilings())
    bw, mm = result["copy_bytes_per_s"], result["matmul_flop_per_s"]
    print(f"copy {bw / 1e12:.2f} TB/s (read + write), bf16 matmul {mm / 1e12:.0f} TFLOP/s", flush=True)

    shape = ModelShape(**QWEN3_06B)
    config = EngineConfig(model=shape, policy="sarathi", max_batch_tokens=8192, max_requests_per_batch=256,
                          block_size=16, num_blocks=None, gpu_memory_utilization=0.9, dtype="bfloat16",
                          device="cuda", cuda_graph_batch_sizes=GRAPH_SIZES)
    start = time.perf_counter()
    engine = LLMEngine(config, random_state_dict(shape))
    result["startup_s"] = time.perf_counter() - start
    result["engine_stats_at_startup"] = engine.stats()
    print(f"engine up in {result['startup_s']:.1f} s: {engine.num_blocks} KV blocks, weights "
          f"{engine.model.num_bytes / 1e9:.3f} GB", flush=True)

    rng, next_id = random.Random(0), [0]
    decode = []
    for context in CONTEXTS:
        for batch in BATCHES:
            row = decode_point(engine, batch, context, bw, rng, next_id)
            decode.append(row)
            print(json.dumps(row), flush=True)
    prefill = []
    for chunk in CHUNKS:
        row = prefill_point(engine, chunk, mm, rng, next_id)
        prefill.append(row)
        print(json.dumps(row), flush=True)
    mixed = [mixed_point(engine, 32, 2048, 480, rng, next_id)]
    print(json.dumps(mixed[0]), flush=True)
    result["throughput"] = throughput_run(engine, rng, next_id)
    print(json.dumps(result["throughput"]), flush=True)
    result.update(decode=decode, prefill=prefill, mixed=mixed, engine_stats_at_end=engine.stats(),
                  wall_s=time.perf_counter() - t0)
    result["verdicts"] = verdicts(decode, prefill)

    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "bench_engine.json"), "w") as f:
            json.dump(result, f, indent=1)
    stats = result["engine_stats_at_end"]
    print(f"\n== native engine, {result['gpu']}: copy {bw / 1e12:.2f} TB/s, matmul {mm / 1e12:.0f} TFLOP/s, "
          f"{engine.num_blocks} blocks; captures/compilations after start-up: "
          f"{stats['cuda_graph_captures_since_startup']}/{stats['compilations_since_startup']}; "
          f"wall {result['wall_s']:.0f} s")
    print(f"{'batch':>5} {'KV':>5} {'floor ms':>9} {'step ms':>8} {'x floor':>7} {'replay ms':>9} {'x floor':>7} "
          f"{'kernels':>7}")
    for r in decode:
        if "skipped" in r:
            print(f"{r['batch']:>5} {r['context']:>5}  skipped: {r['skipped']}")
            continue
        replay = (f"{r['replay_ms']:>9.3f} {r['replay_over_floor']:>7.2f}" if "replay_ms" in r
                  else f"{'eager':>9} {'':>7}")
        print(f"{r['batch']:>5} {r['context']:>5} {r['floor_ms']:>9.3f} {r['step_ms']:>8.3f} "
              f"{r['step_over_floor']:>7.2f} {replay} {r['kernels_per_step']:>7}")
    print(f"{'chunk':>5} {'tok/s':>10} {'step ms':>8} {'floor ms':>9} {'of matmul':>9} {'graph':>10} {'replay ms':>9}")
    for r in prefill:
        print(f"{r['chunk']:>5} {r['tokens_per_s']:>10.0f} {r['step_ms']:>8.2f} {r['floor_ms']:>9.2f} "
              f"{r['fraction_of_matmul_rate']:>9.2f} {_graph_cell(r)}")
    for r in mixed:
        print(f"mixed: {r['decodes']} decodes at KV {r['context']} + a {r['chunk']}-token chunk: step "
              f"{r['step_ms']:.2f} ms, graph / replay ms: {_graph_cell(r)}")
    tp = result["throughput"]
    print(f"offline: {tp['requests']} requests, {tp['output_tokens_per_s']:.0f} output tok/s "
          f"({tp['total_tokens_per_s']:.0f} total) in {tp['seconds']:.1f} s; published: "
          + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()))
    print("\n".join(result["verdicts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
