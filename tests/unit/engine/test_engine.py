"""The runner on hand-built batches and the whole engine against ``model.generate`` (CPU, float32)."""

from __future__ import annotations

import functools

import pytest
import torch

from _qwen3_tiny import TINY, engine_config, hf_model, prompts
from gpu_simulate_test.engine.engine import LLMEngine, StepEntry, StepOutput
from gpu_simulate_test.engine.model import Qwen3Model
from gpu_simulate_test.engine.runner import ModelRunner, _Layout, graph_shapes, pick_graph_shape
from gpu_simulate_test.engine.sequence import BatchEntry, ScheduledBatch, Sequence, SequenceStatus
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError


@pytest.fixture(scope="module")
def hf():
    return hf_model()


def _greedy_next(hf, tokens: list[int]) -> int:
    with torch.no_grad():
        return int(hf(torch.tensor([tokens])).logits[0, -1].argmax())


def _seq(seq_id: int, tokens: list[int], table: list[int]) -> Sequence:
    return Sequence(seq_id=seq_id, token_ids=list(tokens), num_prompt_tokens=len(tokens), max_tokens=8,
                    status=SequenceStatus.RUNNING, block_table=table)


def _entry(seq: Sequence, start: int, n: int, samples: bool, is_prefill: bool = True) -> BatchEntry:
    return BatchEntry(seq=seq, start=start, num_q_tokens=n, samples=samples, is_prefill=is_prefill)


def test_runner_on_hand_built_batches(hf):
    cfg = engine_config(num_blocks=40)
    runner = ModelRunner(cfg, Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    runner.allocate_kv_cache(40)
    pa, pb = prompts([13, 5])
    a, b = _seq(1, pa, [7, 3, 20, 11]), _seq(2, pb, [0, 38])
    # 1: a chunk of A that does not sample, all of B
    assert runner.run(ScheduledBatch((_entry(a, 0, 10, False), _entry(b, 0, 5, True)))) == [_greedy_next(hf, pb)]
    b.token_ids.append(_greedy_next(hf, pb))
    # 2: B decodes (no new block), A finishes its prompt
    got = runner.run(ScheduledBatch((_entry(b, 5, 1, True, False), _entry(a, 10, 3, True))))
    assert got == [_greedy_next(hf, b.token_ids), _greedy_next(hf, pa)]
    a.token_ids.append(got[1])
    b.token_ids.append(got[0])
    # 3: A is preempted and restarts on other blocks (its whole context prefilled again); B decodes into a new block
    a.num_restarts, a.block_table = 1, [30, 31, 2, 5]
    b.block_table = b.block_table + [17]
    got = runner.run(ScheduledBatch((_entry(b, 6, 1, True, False), _entry(a, 0, 14, True))))
    assert got == [_greedy_next(hf, b.token_ids), _greedy_next(hf, a.token_ids)]
    b.token_ids.append(got[0])
    a.token_ids.append(got[1])
    # 4: decode-only (the graph-shaped path); the device table holds exactly the blocks each step reached (a: 15
    # tokens in 4 blocks; b: 8 tokens in 2 of its 3, the third allocated and not read yet)
    got = runner.run(ScheduledBatch((_entry(a, 14, 1, True, False), _entry(b, 7, 1, True, False))))
    assert got == [_greedy_next(hf, a.token_ids), _greedy_next(hf, b.token_ids)]
    for seq, reached in ((a, 4), (b, 2)):
        row = runner.tables.row(seq, reached, new_index := [], [])
        assert new_index == []  # nothing left to upload
        assert runner.tables.table[row, :reached].tolist() == seq.block_table[:reached]
        assert runner.tables.row(seq, reached + 1, new_index, []) == row and len(new_index) == (seq is b)


def test_block_table_rows_are_reused_and_reclaimed(hf):
    cfg = engine_config(max_requests_per_batch=2)
    runner = ModelRunner(cfg, Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    s1, s2, s3 = _seq(1, [1], [4]), _seq(2, [1], [5]), _seq(3, [1], [6])
    idx, blocks = [], []
    r1, r2 = runner.tables.row(s1, 1, idx, blocks), runner.tables.row(s2, 1, idx, blocks)
    assert blocks == [4, 5] and idx == [r1 * runner.tables.width, r2 * runner.tables.width]
    with pytest.raises(RuntimeError, match="more than 2 sequences"):
        runner.tables.row(s3, 1, [], [])
    s1.status = SequenceStatus.WAITING  # preempted: its row may go to another sequence
    assert runner.tables.row(s3, 1, [], []) == r1
    runner.release(s2)
    s1.status = SequenceStatus.RUNNING
    assert runner.tables.row(s1, 1, idx := [], blocks := []) == r2 and blocks == [4]


def _two_runners(hf) -> list[ModelRunner]:
    """Two runners on the same weights, each with a pool of 64 blocks: one step run two ways, compared."""
    runners = []
    for _ in range(2):
        r = ModelRunner(engine_config(num_blocks=64),
                        Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
        r.allocate_kv_cache(64)
        runners.append(r)
    return runners


@pytest.mark.parametrize("pad", [None, (32, 4)])
def test_a_revision_that_only_admits_more_goes_on_from_the_packing_ahead(hf, pad):
    """A step packed ahead (two decodes), then revised at the decision to admit a prompt chunk after them: the
    packing goes on in the same buffer from where it stopped, and the device gets the inputs, K/V and tokens that a
    packing from scratch gives (eager, and padded to its bucket as a graph replays it)."""
    runners = _two_runners(hf)
    pa, pb, pc = prompts([6, 9, 21], seed=31)
    seqs = [_seq(i, p, list(range(8 * i, 8 * i + 8))) for i, p in enumerate((pa, pb, pc))]
    a, b, c = seqs
    for r in runners:
        r.run(ScheduledBatch((_entry(a, 0, 6, True), _entry(b, 0, 9, True))))
    a.token_ids.append(_greedy_next(hf, pa))
    b.token_ids.append(_greedy_next(hf, pb))
    decodes = (_entry(a, 6, 1, True, False), _entry(b, 9, 1, True, False))
    revised = ScheduledBatch(decodes + (_entry(c, 0, 16, False),))
    ahead = runners[0].prepare(ScheduledBatch(decodes), pad_to=pad and (4, 4))
    extended = runners[0].prepare(revised, pad_to=pad, revises=ahead)
    fresh = runners[1].prepare(revised, pad_to=pad)
    assert extended.turn == ahead.turn and extended.filled == fresh.filled == (18, 3, 2, 4, 0)
    assert extended.layout == fresh.layout
    for name in ("ids", "pos", "slots", "seq_lens", "rows", "cu", "logits", "new_index", "new_block"):
        assert torch.equal(runners[0]._view(extended.layout, name), runners[1]._view(fresh.layout, name)), name
    runners[0].launch(extended)
    runners[1].launch(fresh)
    assert runners[0].wait() == runners[1].wait() == [_greedy_next(hf, a.token_ids), _greedy_next(hf, b.token_ids)]
    assert torch.equal(runners[0].kv_cache, runners[1].kv_cache)


# ---- the whole engine against model.generate ------------------------------------------------------------------


def _generate(hf, prompt: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                          max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.fixture(scope="module")
def workload(hf):
    """(prompt, max_tokens, step at which it arrives) and the tokens ``model.generate`` gives each."""
    lengths, outputs, arrive = [23, 5, 40, 9, 17, 31], [6, 9, 4, 12, 7, 5], [0, 0, 0, 2, 5, 5]
    reqs = list(zip(prompts(lengths, seed=7), outputs, arrive))
    return reqs, [_generate(hf, p, n) for p, n, _ in reqs]


def _serve(engine: LLMEngine, reqs, first_id: int = 0) -> tuple[dict[int, list[int]], list[StepOutput]]:
    """Add request ``first_id + i`` at its step, step until all finish; the tokens of each, the steps."""
    tokens: dict[int, list[int]] = {first_id + i: [] for i in range(len(reqs))}
    steps: list[StepOutput] = []
    while len(steps) < 1000:
        for i, (prompt, n, at) in enumerate(reqs):
            if at == len(steps):
                engine.add_request(first_id + i, prompt, n)
        if not engine.has_unfinished():
            if len(steps) > max(at for _, _, at in reqs):
                break
            steps.append(None)  # an idle tick: the next arrival has not come yet
            continue
        out = engine.step()
        assert out.start_ns <= out.end_ns
        for rid, tok in out.new_tokens:
            tokens[rid].append(tok)
        steps.append(out)
    return tokens, [s for s in steps if s is not None]


def _engine(hf, **overrides) -> LLMEngine:
    return LLMEngine(engine_config(**overrides), hf.state_dict())


def test_single_requests_match_generate(hf, workload):
    reqs, want = workload
    engine = _engine(hf, max_batch_tokens=64)
    for i in (0, 3):  # one request at a time: a whole-prompt prefill, then decodes
        prompt, n, _ = reqs[i]
        got, steps = _serve(engine, [(prompt, n, 0)], first_id=i)
        assert got[i] == want[i]
        assert [s.entries[0].is_prefill for s in steps] == [True] + [False] * (n - 1)
        assert steps[-1].finished == [i]


@pytest.mark.parametrize("policy", ["sarathi", "vllm"])
def test_interleaved_batches_match_generate(hf, workload, policy):
    """Chunked prefills (sarathi's budget of 16 tokens) mixed with decodes, arrivals during the run."""
    reqs, want = workload
    engine = _engine(hf, policy=policy, max_batch_tokens=16 if policy == "sarathi" else 48)
    got, steps = _serve(engine, reqs)
    assert [got[i] for i in range(len(reqs))] == want
    kinds = [{e.is_prefill for e in s.entries} for s in steps]
    if policy == "sarathi":
        assert any(e.is_prefill and e.context_len < len(reqs[e.request_id][0]) for s in steps for e in s.entries)
        assert {True, False} in kinds  # a chunk beside decodes
    assert max(len(s.entries) for s in steps) > 2
    assert engine.stats()["preemptions"] == 0


class _Replay:
    """A CUDA graph's stand-in on the CPU: each replay runs the eager forward on its bucket's fixed layout (every
    segment at its bucket's length, as the graph was captured reading it), whatever the step packed."""

    def __init__(self, runner: ModelRunner, shape: tuple[int, int]) -> None:
        self.runner, self.layout = runner, _Layout(shape[0], shape[1], shape[1], runner._max_uploads(*shape), shape[1])

    def replay(self) -> None:
        with torch.inference_mode():
            self.runner._forward(self.layout)


@pytest.mark.parametrize("policy", ["sarathi", "vllm"])
def test_pipelined_bucket_replays_match_generate(hf, workload, policy):
    """Every step that fits a bucket run as its graph runs it (padded inputs, the uploads and the token patches of
    the step in flight written inside the step, unused ones to scratch places), pipelined, with arrivals during
    steps (revisions going on from the packing ahead) and restarts: model.generate's tokens."""
    reqs, want = workload
    engine = _engine(hf, policy=policy, num_blocks=20, max_batch_tokens=16 if policy == "sarathi" else 48,
                     watermark_blocks_fraction=0.0)
    runner = engine.runner
    runner.graph_sizes, runner.graph_token_sizes = [1, 2, 4, 8], [t for t in (16, 32, 64) if t <= runner.max_tokens]
    runner.graphs = {shape: _Replay(runner, shape) for shape in graph_shapes(runner.graph_sizes, runner.graph_token_sizes)}
    got, steps = _serve(engine, reqs)
    assert [got[i] for i in range(len(reqs))] == want
    assert engine.stats()["graph_steps"] > 0.8 * len(steps) and engine.stats()["prefill_graph_steps"] > 0
    assert engine.stats()["preemptions"] > 0


@pytest.mark.parametrize("policy", ["sarathi", "vllm"])
def test_preemption_restarts_match_generate(hf, workload, policy):
    """A pool of 20 blocks of 4 tokens cannot hold every context at once: the newest restart by recompute."""
    reqs, want = workload
    engine = _engine(hf, policy=policy, num_blocks=20, max_batch_tokens=48, watermark_blocks_fraction=0.0)
    got, steps = _serve(engine, reqs)
    assert engine.stats()["preemptions"] > 0
    assert [got[i] for i in range(len(reqs))] == want
    assert engine.stats()["num_blocks"] == 20


def test_stats_and_step_record(hf, workload):
    reqs, _ = workload
    engine = _engine(hf, num_blocks=64)
    engine.add_request(5, reqs[0][0], 3)
    out = engine.step()
    assert out.entries == [StepEntry(5, len(reqs[0][0]), len(reqs[0][0]), True)]
    assert [rid for rid, _ in out.new_tokens] == [5] and out.finished == [] and not out.cuda_graph
    stats = engine.stats()
    assert stats["kernel_path"] == "reference" and stats["cuda_graph_batch_sizes"] == []
    assert stats["cuda_graph_captures_since_startup"] == 0 and stats["compilations_since_startup"] == 0
    assert stats["cuda_graph_token_sizes"] == [] and stats["graph_steps"] == stats["prefill_graph_steps"] == 0
    assert stats["num_blocks"] == 64 and stats["memory"] is None


@pytest.mark.parametrize("overrides, error, match", [
    (dict(policy="fcfs"), InputError, "policy 'fcfs' is unknown"),
    (dict(device="cuda"), EnvironmentUnavailableError, "sees no GPU"),
    (dict(num_blocks=None), InputError, "on the CPU set num_blocks"),
    (dict(dtype="int8"), InputError, "dtype"),
])
def test_bad_configs_fail_before_loading(overrides, error, match):
    if overrides.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(error, match=match):
        LLMEngine(engine_config(**overrides), {})  # an empty state dict: the config is refused first


def test_bad_requests_are_clear_errors(hf):
    engine = _engine(hf, num_blocks=8)
    with pytest.raises(InputError, match="exceeds the model's context"):
        engine.add_request(0, [1] * 40000, 961)
    with pytest.raises(InputError, match="could never run"):
        engine.check_request(30, 10)  # 40 tokens need 10 blocks of 4
    with pytest.raises(InputError, match="outside the vocabulary"):
        engine.add_request(1, [TINY.vocab_size], 1)
    engine.add_request(2, [1, 2], 1)
    with pytest.raises(InputError, match="added already"):
        engine.add_request(2, [1, 2], 1)


def test_graph_bucket_inputs_with_padding_rows(hf):
    """What a graph replays, run eagerly on the CPU: 3 decodes padded to a bucket of 4 give the right tokens, and
    the padding row writes no K/V (slot -1) and reads none (context 0)."""
    cfg = engine_config(num_blocks=16)
    runner = ModelRunner(cfg, Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    runner.allocate_kv_cache(16)
    seqs = [_seq(i, p, [3 * i, 3 * i + 1, 3 * i + 2]) for i, p in enumerate(prompts([6, 9, 3], seed=5))]
    first = runner.run(ScheduledBatch(tuple(_entry(s, 0, s.num_prompt_tokens, True) for s in seqs)))
    for s, tok in zip(seqs, first):
        s.token_ids.append(tok)
    kv_before = runner.kv_cache.clone()
    tokens = runner.run(ScheduledBatch(tuple(_entry(s, s.num_prompt_tokens, 1, True, False) for s in seqs)),
                        pad_to=(4, 4))
    assert tokens == [_greedy_next(hf, s.token_ids) for s in seqs]
    written = (runner.kv_cache != kv_before).any(dim=(0, 1, 4, 5)).nonzero().tolist()  # (block, offset) pairs
    assert sorted(written) == sorted([[s.block_table[s.num_prompt_tokens // 4], s.num_prompt_tokens % 4] for s in seqs])


SEQ_SIZES, TOKEN_SIZES = [1, 2, 4, 8], [4, 8, 16, 32]


@pytest.mark.parametrize("num_tokens, num_seqs, decode_only, want", [
    (3, 3, True, (4, 4)),  # decodes: the smallest B that holds them
    (9, 9, True, None),  # more decodes than the largest B
    (8, 1, False, (8, 1)),  # a chunk of exactly T=8: no padding token, no padding sequence
    (7, 1, False, (8, 2)),  # 1 padding token: sequence 1 holds it
    (8, 4, False, (8, 4)),  # t == T: no padding token, n == B is fine
    (8, 8, False, (16, 9)),  # B must stay below T (the prefill launch exists only when T > B): T=16, B=8+1
    (30, 7, False, (32, 8)),
    (33, 2, False, None),  # a chunk over the largest T: eager
    (20, 8, False, (32, 9)),  # 8 entries (the largest B) and padding tokens: the one-more bucket B=9
    (16, 9, False, (16, 9)),  # 9 entries, no padding token
    (15, 9, False, None),  # 9 entries and padding tokens need B=10: none
])
def test_pick_graph_shape(num_tokens, num_seqs, decode_only, want):
    got = pick_graph_shape(num_tokens, num_seqs, decode_only, SEQ_SIZES, TOKEN_SIZES)
    assert got == want
    if got is not None:
        assert got in graph_shapes(SEQ_SIZES, TOKEN_SIZES)


def _mixed_case(hf, steps: list[tuple[BatchEntry, ...]]) -> tuple[tuple[int, int], list[int]]:
    """Two runners on the same weights run the same earlier steps (eager); the last step runs eagerly on one and
    padded to its bucket on the other: same sampled tokens, same K/V, written to the same slots only."""
    runners = _two_runners(hf)
    *setup, last = steps
    for step in setup:
        for r in runners:
            r.run(ScheduledBatch(step))
    batch = ScheduledBatch(last)
    shape = pick_graph_shape(batch.num_tokens, len(last), batch.is_decode_only, SEQ_SIZES, TOKEN_SIZES)
    assert shape is not None
    kv_before = runners[1].kv_cache.clone()
    eager = runners[0].run(batch)
    padded = runners[1].run(batch, pad_to=shape)
    assert padded == eager
    assert torch.allclose(runners[1].kv_cache, runners[0].kv_cache, rtol=1e-5, atol=1e-6)
    written = (runners[1].kv_cache != kv_before).any(dim=(0, 1, 4, 5)).nonzero().tolist()
    want = sorted({(e.seq.block_table[p // 4], p % 4) for e in last for p in range(e.start, e.start + e.num_q_tokens)})
    assert sorted(map(tuple, written)) == want
    return shape, eager


@pytest.mark.parametrize("case", ["prefill", "decodes_and_chunk", "chunks", "bucket_edge", "chunk_one_left",
                                  "full_batch"])
def test_padded_mixed_step_equals_the_eager_step(hf, case):
    """The padded inputs a mixed graph replays give the eager step's tokens and K/V (CPU, float32), for several
    mixes: a pure prefill, decodes beside one chunk, several chunks (one not sampling), a step exactly at a token
    bucket (no padding token), a chunk leaving one prompt token."""
    pa, pb, pc, pd = prompts([13, 6, 9, 5], seed=21)
    a, b, c, d = (_seq(i, p, list(range(4 * i, 4 * i + 4))) for i, p in enumerate((pa, pb, pc, pd)))
    if case == "prefill":  # 13 tokens: the bucket (16, 2)
        steps = [(_entry(a, 0, 13, True),)]
    elif case == "decodes_and_chunk":  # b and c prefilled first, then decode beside a's first chunk
        steps = [(_entry(b, 0, 6, True), _entry(c, 0, 9, True))]
        b.token_ids.append(_greedy_next(hf, pb))
        c.token_ids.append(_greedy_next(hf, pc))
        steps.append((_entry(b, 6, 1, True, False), _entry(c, 9, 1, True, False), _entry(a, 0, 10, False)))
    elif case == "chunks":  # a's second chunk over its cached prefix, b whole, c's first part (no sample)
        steps = [(_entry(a, 0, 5, False),), (_entry(a, 5, 8, True), _entry(b, 0, 6, True), _entry(c, 0, 4, False))]
    elif case == "bucket_edge":  # 8 tokens in 3 entries: the bucket (8, 4), no padding token
        steps = [(_entry(b, 0, 6, True),)]
        b.token_ids.append(_greedy_next(hf, pb))
        steps.append((_entry(b, 6, 1, True, False), _entry(d, 0, 5, True), _entry(a, 0, 2, False)))
    elif case == "chunk_one_left":  # a chunk leaving one prompt token, then that one token as a prefill entry
        steps = [(_entry(a, 0, 12, False),), (_entry(a, 12, 1, True), _entry(d, 0, 5, True))]
    else:  # a full batch (8 entries, the cap and the largest B) with padding tokens: the one-more bucket B=9
        ps = prompts([3, 4, 5, 6, 3, 4, 5], seed=22)
        seqs = [_seq(10 + i, p, [16 + 2 * i, 17 + 2 * i]) for i, p in enumerate(ps)]
        steps = [tuple(_entry(s, 0, len(p), True) for s, p in zip(seqs, ps))]
        for s, p in zip(seqs, ps):
            s.token_ids.append(_greedy_next(hf, p))
        steps.append(tuple(_entry(s, len(p), 1, True, False) for s, p in zip(seqs, ps)) + (_entry(d, 0, 5, True),))
    shape, tokens = _mixed_case(hf, steps)
    assert shape == {"prefill": (16, 2), "decodes_and_chunk": (16, 4), "chunks": (32, 4), "bucket_edge": (8, 4),
                     "chunk_one_left": (8, 4), "full_batch": (16, 9)}[case]
    sampled = [e.seq for e in steps[-1] if e.samples]
    assert tokens == [_greedy_next(hf, s.token_ids) for s in sampled]


@pytest.mark.parametrize("shape", [(4, 4), (16, 4), (8, 1), (16, 9)])
def test_all_padding_bucket_touches_no_kv(hf, shape):
    """What capture and the memory profile run (no real entry): every token padding, no K/V written; the mixed
    buckets' padding tokens all in sequence 0 (context 0), the decode bucket's one a row."""
    runner = ModelRunner(engine_config(num_blocks=8),
                         Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    runner.allocate_kv_cache(8)
    runner.kv_cache.normal_()
    kv = runner.kv_cache.clone()
    T, B = shape
    layout = runner._load_padding(T, B)
    view = functools.partial(runner._view, layout)
    assert view("slots").tolist() == [-1] * T and view("seq_lens").tolist() == [0] * B
    assert view("cu").tolist() == (list(range(B + 1)) if T == B else [0] + [T] * B)
    with torch.inference_mode():
        assert runner._forward(layout).shape == (B,)
    assert torch.equal(runner.kv_cache, kv)


def test_padding_that_does_not_fit_its_bucket_is_refused(hf):
    runner = ModelRunner(engine_config(num_blocks=16),
                         Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    runner.allocate_kv_cache(16)
    a = _seq(1, prompts([9])[0], [0, 1, 2])
    with pytest.raises(RuntimeError, match="does not fit the graph bucket"):
        runner.run(ScheduledBatch((_entry(a, 0, 9, True),)), pad_to=(8, 2))  # 9 tokens in T=8
    with pytest.raises(RuntimeError, match="does not fit the graph bucket"):
        runner.run(ScheduledBatch((_entry(a, 0, 7, True),)), pad_to=(8, 1))  # padding tokens need a second row


def test_decodes_past_the_token_budget(hf):
    """Vidur's policies decode every running sequence up to the batch cap, even past max_batch_tokens: here 6
    decodes in one step under a budget of 4 tokens."""
    reqs = [(p, 4, 0) for p in prompts([4, 3, 4, 2, 3, 4], seed=11)]
    engine = _engine(hf, policy="vllm", max_batch_tokens=4, max_requests_per_batch=6)
    got, steps = _serve(engine, reqs)
    assert any(len(s.entries) == 6 and not any(e.is_prefill for e in s.entries) for s in steps)
    assert [got[i] for i in range(len(reqs))] == [_generate(hf, p, n) for p, n, _ in reqs]
