"""The engine on a GPU at the Qwen3-0.6B shape, random bf16 weights from a seeded config (no download needed):
its logits against transformers' on the same inputs, graph replays against eager steps, no capture or compilation
during a run, the memory plan, and the bad-input errors. Run: ``pytest -m gpu tests/gpu/test_engine_gpu.py -s``
(``-s`` prints the measured errors, which the closing note quotes)."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import random

import pytest
import torch

from gpu_simulate_test.engine.config import EngineConfig, ModelShape
from gpu_simulate_test.engine.engine import LLMEngine
from gpu_simulate_test.engine.model import AttentionInputs
from gpu_simulate_test.engine.runner import graph_shapes
from gpu_simulate_test.engine.sequence import Sequence
from gpu_simulate_test.errors import InputError

pytestmark = pytest.mark.gpu  # tests/gpu/conftest.py skips it without a GPU

QWEN3_06B = ModelShape(hidden_size=1024, num_layers=28, num_attention_heads=16, num_kv_heads=8, head_dim=128,
                       intermediate_size=3072, vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6,
                       rms_norm_eps=1e-6, tie_word_embeddings=True)
BLOCK = 16
_ids = itertools.count(1_000_000)  # request ids, unique across the module's tests


def _hf_config():
    import transformers

    s = QWEN3_06B
    return transformers.Qwen3Config(
        vocab_size=s.vocab_size, hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_kv_heads,
        head_dim=s.head_dim, max_position_embeddings=s.max_position_embeddings, rope_theta=s.rope_theta,
        rms_norm_eps=s.rms_norm_eps, tie_word_embeddings=s.tie_word_embeddings)


@pytest.fixture(scope="module")
def hf32():
    """The float32 model: the yardstick both bf16 models are measured against."""
    import transformers

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.Qwen3ForCausalLM(_hf_config()).eval()
    with torch.no_grad():  # norms away from 1, so that a misplaced norm weight shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def hf16(hf32):
    import copy

    return copy.deepcopy(hf32).to(torch.bfloat16)


def _config(**overrides) -> EngineConfig:
    base = EngineConfig(model=QWEN3_06B, dtype="bfloat16", device="cuda", num_blocks=8192, block_size=BLOCK,
                        max_batch_tokens=2048, max_requests_per_batch=64)
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def engine(hf16):
    eng = LLMEngine(_config(), hf16.state_dict())
    yield eng
    del eng
    gc.collect()
    torch.cuda.empty_cache()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _pack(parts, device="cuda"):
    """parts: (token ids, block table, start, n) -> the model's inputs (independent of the runner)."""
    ids, pos, slots, cu, lens = [], [], [], [0], []
    width = max(len(t) for _, t, _, _ in parts)
    tables = torch.zeros(len(parts), width, dtype=torch.int32)
    for b, (tokens, table, start, n) in enumerate(parts):
        for p in range(start, start + n):
            ids.append(tokens[p])
            pos.append(p)
            slots.append(table[p // BLOCK] * BLOCK + p % BLOCK)
        cu.append(cu[-1] + n)
        lens.append(start + n)
        tables[b, : len(table)] = torch.tensor(table)
    i32 = lambda x: torch.tensor(x, dtype=torch.int32, device=device)  # noqa: E731
    return i32(ids), i32(pos), AttentionInputs(i32(slots), i32(cu), i32(lens), tables.to(device))


def _hf_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens], device="cuda")).logits[0]


def test_logits_match_hf_prefill_decode_mixed(engine, hf32, hf16):
    """Bound: the engine's logits are no further from the float32 model than transformers' own bf16 run is, within
    a factor 1.5 (plus 2e-3): both round the same weights to bf16, in different kernels."""
    rng = random.Random(0)
    seqs = [[rng.randrange(QWEN3_06B.vocab_size) for _ in range(n)] for n in (1000, 300, 77, 150)]
    blocks = rng.sample(range(engine.num_blocks), 200)
    tables = [blocks[0:70], blocks[70:100], blocks[100:110], blocks[110:125]]
    kv = engine.runner.kv_cache
    report = {}

    def check(name, parts, rows_of):
        ids, pos, attn = _pack(parts)
        idx = torch.tensor([r for r, _ in rows_of], dtype=torch.int32, device="cuda")
        with torch.inference_mode():
            got = engine.model.forward(ids, pos, attn, kv, idx)
        full = {}  # each distinct sequence through each HF model once
        for _, (t, _) in rows_of:
            if tuple(t) not in full:
                full[tuple(t)] = (_hf_logits(hf32, t), _hf_logits(hf16, t))
        want32 = torch.stack([full[tuple(t)][0][p] for _, (t, p) in rows_of])
        want16 = torch.stack([full[tuple(t)][1][p] for _, (t, p) in rows_of])
        err, hf_err = _rel(got, want32), _rel(want16, want32)
        top1 = float((got.argmax(-1) == want16.argmax(-1)).float().mean())
        report[name] = dict(engine_vs_fp32=err, hf_bf16_vs_fp32=hf_err, engine_vs_hf_bf16=_rel(got, want16), top1=top1)
        assert err <= 1.5 * hf_err + 2e-3, report[name]

    a, b, c, d = seqs
    # prefill: A's first 800 tokens, B and C whole (fresh); every 50th token's logits and each last one
    rows = [(i, (a[:800], i)) for i in range(0, 800, 50)] + [(800 + 299, (b, 299)), (1100 + 76, (c, 76))]
    check("prefill", [(a, tables[0], 0, 800), (b, tables[1], 0, 300), (c, tables[2], 0, 77)], rows)
    # decode: B and C one token each over their cached context
    b1, c1 = b + [5], c + [7]
    check("decode", [(b1, tables[1], 300, 1), (c1, tables[2], 77, 1)], [(0, (b1, 300)), (1, (c1, 77))])
    # mixed: B decodes again, A's last 200 tokens over its cached 800, D prefills fresh
    b2 = b1 + [11]
    check("mixed", [(b2, tables[1], 301, 1), (a, tables[0], 800, 200), (d, tables[3], 0, 150)],
          [(0, (b2, 301)), (200, (a, 999)), (100, (a, 899)), (350, (d, 149))])
    print("\nlogits relative errors:", report)


def _queue(engine, prompt: list[int], max_tokens: int) -> None:
    """A request straight into the engine's scheduler (these tests drive the scheduler and the runner by hand)."""
    engine.scheduler.add(Sequence(seq_id=next(_ids), token_ids=prompt, num_prompt_tokens=len(prompt),
                                  max_tokens=max_tokens))


def _decode_batch(engine, n: int, rng: random.Random):
    """n requests prefilled through the engine and left decoding; returns the engine's next decode batch."""
    for _ in range(n):
        _queue(engine, [rng.randrange(1000) for _ in range(rng.randrange(20, 300))], 40)
    while True:
        batch = engine.scheduler.schedule()
        if batch.is_decode_only and len(batch.entries) == n:
            return batch
        engine.scheduler.postprocess(batch, engine.runner.run(batch))


def _drain(engine) -> None:
    while engine.has_unfinished():
        engine.step()


@pytest.mark.parametrize("n", [1, 8, 32])
def test_graph_replay_equals_eager(engine, n):
    """At a bucket's own size the replay is the eager step bit for bit (same kernels, same attention plan): same
    tokens, same K/V written."""
    rng = random.Random(n)
    batch = _decode_batch(engine, n, rng)
    assert engine.runner.graph_shape(batch) == (n, n)
    kv = engine.runner.kv_cache
    eager = engine.runner.run(batch, allow_graph=False)
    kv_eager = kv.clone()
    graph = engine.runner.run(batch)  # writes the same K/V into the same slots
    assert graph == eager
    assert torch.equal(kv, kv_eager)
    engine.scheduler.postprocess(batch, graph)
    _drain(engine)


def test_padding_rows_do_not_change_real_rows(engine):
    """5 sequences replayed in the bucket of 8 (3 padding rows) give the tokens the same 5 get as the first rows
    of 8 real ones."""
    rng = random.Random(3)
    batch8 = _decode_batch(engine, 8, rng)
    first5 = type(batch8)(batch8.entries[:5])
    assert engine.runner.graph_shape(first5) == (8, 8)
    assert engine.runner.run(first5) == engine.runner.run(batch8)[:5]
    engine.scheduler.postprocess(batch8, engine.runner.run(batch8))
    _drain(engine)


def _mixed_batch(engine, num_decodes: int, prompt: int, rng: random.Random):
    """``num_decodes`` requests left decoding (at contexts 20-300), then one fresh prompt: the engine's next batch,
    the decodes beside the prompt's first chunk (sarathi), or the prompt alone when ``num_decodes`` is 0."""
    if num_decodes:
        batch = _decode_batch(engine, num_decodes, rng)
        engine.scheduler.postprocess(batch, engine.runner.run(batch))
    _queue(engine, [rng.randrange(QWEN3_06B.vocab_size) for _ in range(prompt)], 4)
    batch = engine.scheduler.schedule()
    assert len(batch.entries) == num_decodes + 1 and not batch.is_decode_only
    return batch


@pytest.mark.parametrize("num_decodes, prompt, shape", [
    (0, 512, (512, 1)),  # a prefill chunk exactly at the largest token bucket
    (0, 100, (128, 2)),  # a short prompt: 28 padding tokens in a second sequence
    (3, 20, (32, 8)),  # 23 tokens in 4 entries: 9 padding tokens in a fifth sequence, B=8
    (32, 480, (512, 48)),  # bench_engine's mixed row: 32 decodes beside a 480-token chunk
])
def test_mixed_graph_replay_equals_eager(engine, num_decodes, prompt, shape):
    """A step with a prefill chunk replays its bucket's graph: bit for bit the eager step at the bucket's padded
    inputs (same kernels, same shapes: same tokens, same K/V), and the unpadded eager step within bf16 rounding
    (other matmul shapes, another split-KV plan): the K/V it writes within 2e-2 relative, its tokens agreeing on
    at least 90% of the sampled rows (random weights: near-ties flip under rounding)."""
    rng = random.Random(100 + prompt)
    batch = _mixed_batch(engine, num_decodes, prompt, rng)
    runner = engine.runner
    assert runner.graph_shape(batch) == shape
    kv = runner.kv_cache
    padded = runner.run(batch, pad_to=shape)
    assert runner.last_graph_shape is None
    kv_padded = kv.clone()
    graph = runner.run(batch)  # the same K/V into the same slots
    assert runner.last_graph_shape == shape
    assert graph == padded
    assert torch.equal(kv, kv_padded)
    eager = runner.run(batch, allow_graph=False)
    slots = torch.tensor([e.seq.block_table[p // BLOCK] * BLOCK + p % BLOCK for e in batch.entries
                          for p in range(e.start, e.start + e.num_q_tokens)], device="cuda")
    err = _rel(kv.flatten(2, 3)[:, :, slots], kv_padded.flatten(2, 3)[:, :, slots])
    agree = sum(a == b for a, b in zip(graph, eager)) / len(eager)
    print(f"\nmixed bucket {shape}: K/V written, graph vs eager relative error {err:.2e}; tokens agree {agree:.2f}")
    assert len(graph) == len(eager) == sum(e.samples for e in batch.entries)
    assert err <= 2e-2 and agree >= 0.9
    engine.scheduler.postprocess(batch, graph)
    _drain(engine)


def test_no_capture_or_compilation_during_a_run(engine):
    """A mixed workload (waves of arrivals: chunked prefills beside decodes, decode batches of every size, requests
    finishing at different steps) after start-up: every kernel variant was compiled and every graph captured
    before it; stats() says so and counts both kinds of step; steps with a prefill chunk ran from graphs too."""
    before = engine.stats()
    rng = random.Random(7)
    for wave in range(4):
        for _ in range(rng.randrange(5, 40)):
            engine.add_request(next(_ids), [rng.randrange(QWEN3_06B.vocab_size) for _ in range(rng.randrange(1, 1500))],
                               rng.randrange(1, 60))
        for _ in range(rng.randrange(5, 30)):
            if engine.has_unfinished():
                engine.step()
    _drain(engine)
    stats = engine.stats()
    print("\nstats after the run:", stats)
    assert stats["cuda_graph_captures_since_startup"] == 0
    assert stats["compilations_since_startup"] == 0
    assert stats["graph_steps"] > before["graph_steps"] and stats["eager_steps"] > before["eager_steps"]
    assert stats["prefill_graph_steps"] > before["prefill_graph_steps"]
    assert stats["kernel_path"] == "triton"
    assert stats["cuda_graph_captures_at_startup"] == len(graph_shapes(stats["cuda_graph_batch_sizes"],
                                                                       stats["cuda_graph_token_sizes"]))


def test_pipelined_steps_give_the_tokens_of_steps_run_one_at_a_time(engine):
    """The pipelined loop (each step packed while the one before runs, the token ids that step is still sampling
    written in on the device inside the next step's graph, a revision that admits an arrival going on from the
    packing ahead) gives every request the tokens it gets when the engine steps one iteration at a time with
    nothing in flight, each request added before the decision it joined when pipelined: the same batches, run from
    the same graphs."""
    rng = random.Random(11)
    plan = sorted((rng.randrange(40), [rng.randrange(QWEN3_06B.vocab_size) for _ in range(rng.randrange(1, 900))],
                   rng.randrange(1, 50)) for _ in range(48))  # (loop turn it arrives at, prompt, tokens)
    ids = [next(_ids) for _ in plan]
    pipelined: dict[int, list[int]] = {rid: [] for rid in ids}
    joins: list[int] = []  # the iteration whose decision each request joined
    arrivals, turn, calls = list(zip(ids, plan)), 0, 0
    while arrivals or engine.has_unfinished():
        while arrivals and arrivals[0][1][0] <= turn:
            rid, (_, prompt, n) = arrivals.pop(0)
            engine.add_request(rid, prompt, n)
            joins.append(calls + (engine.in_flight is not None))  # in flight: it joins at that iteration's end
        if engine.has_unfinished():
            for rid, tok in engine.step().new_tokens:
                pipelined[rid].append(tok)
            calls += 1
        turn += 1
    assert len(set(joins)) > 10  # requests joined many decisions, most of them while a step ran
    again = [next(_ids) for _ in plan]
    one_at_a_time: dict[int, list[int]] = {rid: [] for rid in again}
    arrivals, calls = list(zip(again, zip(plan, joins))), 0
    while arrivals or engine.has_unfinished():
        while arrivals and (arrivals[0][1][1] <= calls or not engine.has_unfinished()):
            rid, ((_, prompt, n), _) = arrivals.pop(0)
            engine.add_request(rid, prompt, n)
        for rid, tok in engine.step(pipeline=False).new_tokens:
            one_at_a_time[rid].append(tok)
        calls += 1
    assert [len(pipelined[rid]) for rid in ids] == [n for _, _, n in plan]
    assert [pipelined[rid] for rid in ids] == [one_at_a_time[rid] for rid in again]


def test_pool_sized_from_memory_utilization(hf16):
    """num_blocks=None: the pool fills gpu_memory_utilization of the device after weights, peak activations and
    graphs; the whole process then holds no more than that."""
    gc.collect()
    torch.cuda.empty_cache()
    eng = LLMEngine(_config(num_blocks=None, gpu_memory_utilization=0.5), hf16.state_dict())
    try:
        plan = eng.stats()["memory"]
        print("\nmemory plan:", plan, "num_blocks:", eng.num_blocks)
        assert eng.num_blocks > 1000 and plan["resident"] > 1.19e9  # the weights at least
        free, total = torch.cuda.mem_get_info()
        assert total - free <= 0.51 * total  # everything the process holds, the module's other engine included
    finally:
        del eng
        gc.collect()
        torch.cuda.empty_cache()


def test_bad_input_is_refused_before_running(hf16):
    sd = hf16.state_dict()
    with pytest.raises(InputError, match="policy 'lifo' is unknown"):
        LLMEngine(_config(policy="lifo"), sd)
    with pytest.raises(InputError, match="no KV block fits"):
        LLMEngine(_config(num_blocks=None, gpu_memory_utilization=0.001), sd)
    eng = LLMEngine(_config(num_blocks=8, cuda_graph_batch_sizes=(1,)), sd)
    try:
        with pytest.raises(InputError, match="could never run"):
            eng.add_request(0, [1] * 200, 10)  # 210 tokens need 14 blocks of 16
        with pytest.raises(InputError, match="exceeds the model's context"):
            eng.check_request(40000, 961)
    finally:
        del eng
        gc.collect()
        torch.cuda.empty_cache()
