"""Why the campaign's decodes of 5-8 requests are predicted ~7% short (graph bucket 8), when 3-4 (bucket 4) are not.

The bundles' token rows at 8 tokens sum to 32.3 us a layer against 35.1 at 4 and 34.5 at 12, in every build
(``mlp_raw.csv`` of c50eb92bcf74, 74cd25fcc11c, ed0409859a20), and the whole-step fit shape decode:8x1024 is
predicted ~10% short. Each token row is timed in its layer (``EngineLayerOps.token_ops``): a CUDA graph of the whole
layer sequence against the same without the op, with a prompt of ``n`` tokens as the attention between the ops; a
decode step runs ``n`` decodes there instead. On one engine (the campaign's sarathi config, random weights), for
``n`` decodes at KV 1,024, this times, device only (CUDA events over graph replays):

- ``step_us``: the engine's own step graph of the bucket, replayed with a real step's inputs (``runner.graphs``);
- ``layers_prefill_us`` / ``layers_decode_us``: the profiler's layer sequence (every op, its attention included)
  for all 28 layers, with the prompt's attention between the ops as the profiler has it, and with the decodes';
- ``rows_us``: the profiler's token rows at the bucket's tokens summed over the layers (``time_token_ops``), and
  ``attn_us`` its decode attention row at the batch (``time_attention``), both x 28; ``outside_us``: the work
  outside the layers at the bucket's rows (``time_outside_layers``).

    source scripts/gpu_env.sh && python3 studies/2026-12-03-bucket8/steps_by_batch.py \
        [--kernels | --chain | --recapture | --inputs | --forward-parts]  # $OUT: csv
"""

from __future__ import annotations

import importlib.util
import os
import random
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
BATCHES = (1, 2, 3, 4, 5, 6, 8, 12, 16)
KV = 1024
REPLAYS = 50


def _bench():
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "benchmarks" / "bench_engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _replay_us(fn) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(REPLAYS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def kernel_table(fn, label: str) -> dict[str, tuple[int, float]]:
    """Per kernel name: how many ran and their device time (us) in 5 calls of ``fn`` (a graph's replay: CUPTI
    traces the kernels inside it), per call."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    out: dict[str, tuple[int, float]] = {}
    for e in prof.key_averages():
        if e.device_time_total > 0:
            out[e.key[:90]] = (e.count // 5, e.device_time_total / 5)
    print(f"== {label}: {sum(t for _, t in out.values()):.1f} us of kernels a call")
    return out


def step_graph(engine, batch: int, rng: random.Random, next_id: list[int]):
    """The bucket graph of ``batch`` decodes at KV ``KV`` with the last real step's inputs on the device, its bucket,
    and the requests to finish afterwards (``finish``)."""
    vocab = engine.config.model.vocab_size
    ids = []
    for _ in range(batch):
        engine.add_request(next_id[0], [rng.randrange(vocab) for _ in range(KV)], 64)
        ids.append(next_id[0])
        next_id[0] += 1
    seen = 0
    while True:
        out = engine.step(pipeline=seen < 5)
        if out.batch.is_decode_only and len(out.batch.entries) == batch:
            seen += 1
            if seen > 5:
                break
    shape = engine.runner.graph_shape(out.batch)
    return engine.runner.graphs[shape].graph.replay, shape


def finish(engine) -> None:
    while engine.has_unfinished():
        engine.step()


def step_graph_us(engine, batch: int, rng: random.Random, next_id: list[int]) -> tuple[float, tuple[int, int]]:
    """The bucket graph of ``batch`` decodes at KV ``KV``, replayed with the last real step's inputs."""
    replay, shape = step_graph(engine, batch, rng, next_id)
    us = _replay_us(replay)
    finish(engine)
    return us, shape


def layer_sequence_us(ops, n: int, decode_context: bool) -> float:
    """The profiler's layer sequence for ``n`` tokens, every op, over all layers, as one graph's replay (us)."""
    return _replay_us(layer_sequence(ops, n, decode_context))


def layer_sequence(ops, n: int, decode_context: bool):
    """The profiler's layer sequence for ``n`` tokens (``decode_context``: ``n`` decodes at KV ``KV`` as the
    attention between the ops, else one prompt of ``n``), every op, over all layers: a graph's replay."""
    from gpu_simulate_test.vidur_ext.profiler import engine_ops as eo

    layers, s = ops.model.layers, ops.shape
    x, residual = ops._rand(n, s.hidden_size), ops._rand(n, s.hidden_size)
    q, k, v = ops.layer.qkv_proj(x)
    if decode_context:
        positions = torch.full((n,), KV, dtype=torch.int32, device=ops.device)
        attn, caches = ops._attention_inputs([(KV, 1)] * n)
    else:
        positions = torch.arange(n, dtype=torch.int32, device=ops.device)
        attn, caches = ops._attention_inputs([(0, n)])
    o = ops._rand(n, s.num_attention_heads * s.head_dim)
    gate_up = ops._rand(n, 2 * s.intermediate_size)
    act = ops._rand(n, s.intermediate_size)
    eps = s.rms_norm_eps
    kernels = eo.kernels
    if kernels.fuses_projection_input(x):
        fns = [lambda i: layers[i].input_norm_qkv_proj(x, residual),
               lambda i: layers[i].rope_and_store(q, k, v, positions, attn, *caches[i], ops.model.cos_sin),
               lambda i: layers[i].attend(q, attn, *caches[i]), lambda i: layers[i].o_proj(o),
               lambda i: layers[i].post_norm_up_proj(x, residual), lambda i: layers[i].mlp_act_down_proj(gate_up)]
    else:
        fns = [lambda i: kernels.add_rms_norm(x, residual, layers[i].w.input_norm, eps),
               lambda i: layers[i].qkv_proj(x),
               lambda i: layers[i].rope_and_store(q, k, v, positions, attn, *caches[i], ops.model.cos_sin),
               lambda i: layers[i].attend(q, attn, *caches[i]), lambda i: layers[i].o_proj(o),
               lambda i: kernels.add_rms_norm(x, residual, layers[i].w.post_norm, eps),
               lambda i: kernels.linear(x, layers[i].w.gate_up_proj), lambda i: kernels.silu_and_mul(gate_up),
               lambda i: kernels.linear(act, layers[i].w.down_proj)]
    return eo._graph_of(fns, ops.num_layers)


def chained_layers(ops, n: int):
    """The 28 layers as the engine's forward runs them (``Qwen3Layer.forward``: each op reads the one before's
    output), ``n`` decodes at KV ``KV`` as the attention: a graph's replay."""
    from gpu_simulate_test.vidur_ext.profiler import engine_ops as eo

    layers, s = ops.model.layers, ops.shape
    h, residual = ops._rand(n, s.hidden_size), ops._rand(n, s.hidden_size)
    positions = torch.full((n,), KV, dtype=torch.int32, device=ops.device)
    attn, caches = ops._attention_inputs([(KV, 1)] * n)
    out = {}

    def run(i: int) -> None:
        x, r = (h, residual) if i == 0 else out[i - 1]
        out[i] = layers[i].forward(x, r, positions, attn, *caches[i], ops.model.cos_sin)

    return eo._graph_of([run], ops.num_layers)


def keep_packings(runner) -> list:
    """Every step the runner packs from now on, in order (its ``prepare`` wrapped; ``del runner.prepare`` restores
    it): the last one is the step ``step_graph`` left on the device."""
    packed, prepare = [], runner.prepare

    def keep(*args, **kwargs):
        packed.append(prepare(*args, **kwargs))
        return packed[-1]

    runner.prepare = keep
    return packed


def real_inputs(engine, ops, rng: random.Random, next_id: list[int]) -> int:
    """For 4, 8 and 16 decodes at KV ``KV``: the step graph with the step's own inputs; the 28 layers' attention alone
    and the 28 layers chained (``Qwen3Layer.forward``), each in a fresh graph, once on the step's own attention inputs
    (its block tables, slots and lengths, the decode work table planned from them) and once on the profiler's (each
    sequence on consecutive blocks from block 0: ``EngineLayerOps._attention_inputs``)."""
    import functools as ft

    from gpu_simulate_test.engine.model import AttentionInputs, with_decode_work
    from gpu_simulate_test.vidur_ext.profiler import engine_ops as eo

    runner, model, s = engine.runner, ops.model, ops.shape
    packed = keep_packings(runner)
    lines = ["batch,step_us,attn_own_us,attn_profiler_us,chained_own_us,chained_profiler_us"]
    for batch in (4, 8, 16):
        replay, _ = step_graph(engine, batch, rng, next_id)
        step_us = _replay_us(replay)
        layout = packed[-1].layout  # the step just run (nothing in flight: its inputs are still on the device)
        v = ft.partial(layout.view, runner._dev)
        kv = runner.kv_cache
        own = with_decode_work(AttentionInputs(v("slots"), v("cu"), v("seq_lens"),
                                               runner.tables.table.index_select(0, v("rows"))), kv[0, 0])
        positions = v("pos")
        mean_kv = int(round(float(v("seq_lens").float().mean()))) - 1
        prof, caches = ops._attention_inputs([(mean_kv, 1)] * batch)
        n = positions.shape[0]
        q = ops._rand(n, s.num_attention_heads, s.head_dim)
        h, residual = ops._rand(n, s.hidden_size), ops._rand(n, s.hidden_size)
        prof_pos = torch.full((n,), mean_kv, dtype=torch.int32, device=ops.device)
        out = {}

        def chained(attn, pos, cache_of):
            def run(i: int) -> None:
                x, r = (h, residual) if i == 0 else out[i - 1]
                out[i] = model.layers[i].forward(x, r, pos, attn, *cache_of(i), model.cos_sin)
            return eo._graph_of([run], ops.num_layers)

        with torch.inference_mode():
            own_cache = lambda i: (kv[0, i], kv[1, i])  # noqa: E731
            attn_own = _replay_us(eo._graph_of([lambda i: model.layers[i].attend(q, own, *own_cache(i))], ops.num_layers))
            attn_prof = _replay_us(eo._graph_of([lambda i: model.layers[i].attend(q, prof, *caches[i])], ops.num_layers))
            ch_own = _replay_us(chained(own, positions, own_cache))
            ch_prof = _replay_us(chained(prof, prof_pos, lambda i: caches[i]))
        finish(engine)
        lines.append(f"{batch},{step_us:.1f},{attn_own:.1f},{attn_prof:.1f},{ch_own:.1f},{ch_prof:.1f}")
        print(lines[-1], flush=True)
    del runner.prepare  # the class's own method again
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "inputs.csv").write_text("\n".join(lines) + "\n")
    return 0


def forward_parts(engine, rng: random.Random, next_id: list[int]) -> int:
    """For 4, 8 and 16 decodes at KV ``KV``, on the step's own inputs, each in a fresh graph (us): the runner's whole
    forward (``_forward``); its layers alone, from the embeddings' output; the block-table gather and decode work
    table, then the layers; the embedding, then the layers; the layers, then the final norm, LM head and argmax."""
    import functools as ft

    from gpu_simulate_test.engine import kernels
    from gpu_simulate_test.engine.model import AttentionInputs, with_decode_work

    runner, model = engine.runner, engine.runner.model
    packed = keep_packings(runner)
    lines = ["batch,forward_us,layers_us,work_table_layers_us,embedding_layers_us,layers_head_us"]
    for batch in (4, 8, 16):
        step_graph(engine, batch, rng, next_id)
        layout = packed[-1].layout
        v = ft.partial(layout.view, runner._dev)
        kv = runner.kv_cache

        def attn_inputs():
            return with_decode_work(AttentionInputs(v("slots"), v("cu"), v("seq_lens"),
                                                    runner.tables.table.index_select(0, v("rows"))), kv[0, 0])

        with torch.inference_mode():
            attn = attn_inputs()
            h0 = torch.nn.functional.embedding(v("ids"), model.embed_tokens)

            def layers(h, a):
                residual = None
                for i, layer in enumerate(model.layers):
                    h, residual = layer.forward(h, residual, v("pos"), a, kv[0, i], kv[1, i], model.cos_sin)
                return h, residual

            def head(h, residual):
                h, residual = h.index_select(0, v("logits")), residual.index_select(0, v("logits"))
                h, _ = kernels.add_rms_norm(h, residual, model.final_norm, model.shape.rms_norm_eps)
                return kernels.lm_head(h, model.lm_head).argmax(-1)

            parts = [lambda: runner._forward(layout), lambda: layers(h0, attn), lambda: layers(h0, attn_inputs()),
                     lambda: layers(torch.nn.functional.embedding(v("ids"), model.embed_tokens), attn),
                     lambda: head(*layers(h0, attn))]
            times = []
            for part in parts:
                part()
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    part()
                times.append(_replay_us(graph.replay))
                del graph
        finish(engine)
        lines.append(f"{batch}," + ",".join(f"{t:.1f}" for t in times))
        print(lines[-1], flush=True)
    del runner.prepare  # the class's own method again
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "forward_parts.csv").write_text("\n".join(lines) + "\n")
    return 0


def main() -> int:
    if not torch.cuda.is_available():
        print("steps_by_batch: no CUDA GPU here")
        return 0
    from gpu_simulate_test.engine.config import EngineConfig, ModelShape
    from gpu_simulate_test.engine.engine import LLMEngine
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.profiler.operators import time_attention, time_outside_layers, time_token_ops
    from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod

    bench = _bench()
    shape = ModelShape(**bench.QWEN3_06B)
    config = EngineConfig(model=shape, policy="sarathi", max_batch_tokens=512, max_requests_per_batch=128,
                          block_size=16, num_blocks=None, gpu_memory_utilization=0.9, dtype="bfloat16", device="cuda")
    engine = LLMEngine(config, bench.random_state_dict(shape))
    ops = EngineLayerOps(engine)
    method = TimingMethod(warmup_iters=5, repeat_iters=15, calls_per_repeat=10)  # configs/profile/gpu.yaml's
    sync = torch.cuda.synchronize
    rng, next_id = random.Random(0), [0]
    if "--inputs" in sys.argv:  # the step's own inputs (its blocks, its work table) against the profiler's
        return real_inputs(engine, ops, rng, next_id)
    if "--forward-parts" in sys.argv:  # the runner's forward, piece by piece, on the step's own inputs
        return forward_parts(engine, rng, next_id)
    if "--recapture" in sys.argv:  # the start-up graph of a decode bucket against the same forward captured afresh
        runner, lines = engine.runner, ["bucket,startup_graph_us,fresh_graph_us,fresh_own_pool_us"]
        for b in (4, 8, 16):
            layout = runner._load_padding(b, b)  # every sequence padding: no K/V read, the same inputs for all three
            startup = _replay_us(runner.graphs[(b, b)].graph.replay)
            fresh = []
            for pool in (runner.graphs[(b, b)].graph.pool(), None):
                with torch.inference_mode():
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, pool=pool):
                        runner._forward(layout)
                fresh.append(_replay_us(graph.replay))
                del graph
            lines.append(f"{b}x{b},{startup:.1f},{fresh[0]:.1f},{fresh[1]:.1f}")
            print(lines[-1], flush=True)
        if os.environ.get("OUT"):
            (Path(os.environ["OUT"]) / "recapture.csv").write_text("\n".join(lines) + "\n")
        return 0
    if "--chain" in sys.argv:  # the layers as the engine's forward chains them, against the profiler's sequence
        lines = ["batch,step_us,layers_decode_us,chained_us,outside_us"]
        for batch in (4, 8, 16):
            replay, (tokens, seqs) = step_graph(engine, batch, rng, next_id)
            step_us = _replay_us(replay)
            finish(engine)
            with torch.inference_mode():
                dec = layer_sequence_us(ops, tokens, decode_context=True)
                chained = _replay_us(chained_layers(ops, tokens))
                outside = ops.outside_layers(tokens, seqs)
                out = _replay_us(outside) / getattr(outside, "calls_per_run", 1)
            lines.append(f"{batch},{step_us:.1f},{dec:.1f},{chained:.1f},{out:.1f}")
            print(lines[-1], flush=True)
        if os.environ.get("OUT"):
            (Path(os.environ["OUT"]) / "chain.csv").write_text("\n".join(lines) + "\n")
        return 0
    if "--kernels" in sys.argv:  # kernel by kernel: the step graphs of 4 and 8 decodes against the profiler's
        tables = {}
        for batch in (4, 8):
            replay, _ = step_graph(engine, batch, rng, next_id)
            tables[f"step{batch}"] = kernel_table(replay, f"step graph, {batch} decodes")
            finish(engine)
            with torch.inference_mode():
                seq = layer_sequence(ops, batch, decode_context=True)
                tables[f"layers{batch}"] = kernel_table(seq, f"profiler's layer sequence, {batch} decodes")
                outside = ops.outside_layers(batch, batch)
                tables[f"outside{batch}"] = kernel_table(outside, f"outside the layers, {batch} rows")
        names = sorted({k for t in tables.values() for k in t})
        lines = ["kernel," + ",".join(f"{c}_n,{c}_us" for c in tables)]
        for k in names:
            cells = [f"{tables[c].get(k, (0, 0.0))[0]},{tables[c].get(k, (0, 0.0))[1]:.1f}" for c in tables]
            lines.append(f"\"{k}\"," + ",".join(cells))
        text = "\n".join(lines)
        print(text)
        if os.environ.get("OUT"):
            (Path(os.environ["OUT"]) / "kernels.csv").write_text(text + "\n")
        return 0
    rows = []
    for batch in BATCHES:
        step_us, (tokens, seqs) = step_graph_us(engine, batch, rng, next_id)
        with torch.inference_mode():
            pre = layer_sequence_us(ops, tokens, decode_context=False)
            dec = layer_sequence_us(ops, tokens, decode_context=True)
        (_, samples), = time_token_ops(ops, [tokens], method, sync)
        token_rows = sum(float(statistics.median(v)) for v in samples.values()) * 1e3
        (_, _, _, att), = time_attention(ops, [], [(batch, KV)], method, sync)
        attn = float(statistics.median(att["attn_decode"])) * 1e3
        (_, _, out_ms), = time_outside_layers(ops, [(tokens, seqs)], method, sync)
        row = {"batch": batch, "bucket": f"{tokens}x{seqs}", "step_us": step_us, "layers_prefill_us": pre,
               "layers_decode_us": dec, "rows_us": ops.num_layers * token_rows, "attn_us": ops.num_layers * attn,
               "outside_us": float(statistics.median(out_ms)) * 1e3}
        row["rows_attn_outside_us"] = row["rows_us"] + row["attn_us"] + row["outside_us"]
        rows.append(row)
        print({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if os.environ.get("OUT"):
        import csv

        with open(Path(os.environ["OUT"]) / "steps_by_batch.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
