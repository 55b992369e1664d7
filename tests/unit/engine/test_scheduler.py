"""The scheduler's policies on scripted workloads: every batch below is derived by hand from Vidur 0.0.26's
``SarathiReplicaScheduler`` / ``VLLMReplicaScheduler`` (specs/engine.md), plus a randomized stress run of the
block ledger's invariants."""

from __future__ import annotations

import random

import pytest

from gpu_simulate_test.engine import config as engine_config
from gpu_simulate_test.engine.config import EngineConfig, ModelShape
from gpu_simulate_test.engine.scheduler import POLICIES, Scheduler
from gpu_simulate_test.engine.sequence import ScheduledBatch, Sequence, SequenceStatus
from gpu_simulate_test.errors import InputError

SHAPE = ModelShape(hidden_size=128, num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=32,
                   intermediate_size=384, vocab_size=1000, max_position_embeddings=4096, rope_theta=1e6,
                   rms_norm_eps=1e-6, tie_word_embeddings=True)


def make(policy: str, *, num_blocks: int = 1000, block_size: int = 4, budget: int = 100, cap: int = 8,
         watermark: float = 0.0) -> Scheduler:
    cfg = EngineConfig(model=SHAPE, policy=policy, max_batch_tokens=budget, max_requests_per_batch=cap,
                       block_size=block_size, watermark_blocks_fraction=watermark, device="cpu")
    return Scheduler(cfg, num_blocks)


def add(s: Scheduler, seq_id: int, prompt: int, decode: int, arrival: int | None = None) -> Sequence:
    seq = Sequence(seq_id, [seq_id] * prompt, prompt, decode, arrival_time_ns=seq_id if arrival is None else arrival)
    s.add(seq)
    return seq


def members(batch: ScheduledBatch) -> str:
    """Vidur's ``requests`` field of iteration_metrics.csv: ``r<id>:<tokens>;...`` in batch order."""
    return ";".join(f"r{e.seq.seq_id}:{e.num_q_tokens}" for e in batch.entries)


def step(s: Scheduler) -> tuple[str, list[int]]:
    """One iteration: its members and the ids that finished; each sampled token is 7."""
    batch = s.schedule()
    assert batch is not None
    done = s.postprocess(batch, [7] * sum(e.samples for e in batch.entries))
    return members(batch), [seq.seq_id for seq in done]


def run(s: Scheduler) -> list[str]:
    out = []
    while s.has_unfinished():
        out.append(step(s)[0])
    assert s.schedule() is None
    return out


def test_policy_registry_matches_the_config_names() -> None:
    assert tuple(POLICIES) == engine_config.POLICIES


def test_sarathi_chunks_a_prompt_then_decodes() -> None:
    s = make("sarathi", budget=8)
    seq = add(s, 0, 20, 3)
    assert step(s) == ("r0:8", []) and step(s) == ("r0:8", [])
    batch = s.schedule()
    assert [(e.start, e.num_q_tokens, e.samples, e.is_prefill) for e in batch.entries] == [(16, 4, True, True)]
    s.postprocess(batch, [5])
    assert seq.token_ids[20:] == [5] and seq.is_prefill_complete
    batch = s.schedule()
    assert [(e.start, e.num_q_tokens, e.samples, e.is_prefill) for e in batch.entries] == [(20, 1, True, False)]
    s.postprocess(batch, [6])
    assert step(s) == ("r0:1", [0])
    assert seq.token_ids[20:] == [5, 6, 7] and seq.status is SequenceStatus.FINISHED
    assert s.block_manager.num_free == 1000 and seq.block_table == [] and not s.has_unfinished()


def test_sarathi_decodes_first_then_prefill_chunks_then_new_requests_in_the_budget() -> None:
    s = make("sarathi", budget=8)
    add(s, 0, 4, 4)
    assert step(s)[0] == "r0:4"
    add(s, 1, 10, 2)
    add(s, 2, 3, 2)
    # r0 decodes (1 token); r1 is new and takes the other 7; r2 gets nothing (budget spent) and waits.
    assert step(s)[0] == "r0:1;r1:7"
    # r0 decodes, r1 finishes its prompt (3), r2 is admitted with its whole prompt (3): 7 of 8 tokens.
    assert step(s)[0] == "r0:1;r1:3;r2:3"
    assert step(s) == ("r0:1;r1:1;r2:1", [0, 1, 2])


def test_sarathi_batch_cap_counts_admitted_requests() -> None:
    s = make("sarathi", cap=2)
    for i in range(3):
        add(s, i, 5, 3)
    assert run(s) == ["r0:5;r1:5", "r0:1;r1:1", "r0:1;r1:1", "r2:5", "r2:1", "r2:1"]


def test_sarathi_watermark_applies_to_new_requests() -> None:
    # 10 blocks of 4 tokens, watermark int(0.2 * 10) = 2 blocks. r0 takes 5 blocks; r1 needs 4 and would leave
    # 1 < 2 free, so it waits, although 5 are free; r0's decode then takes a block without any watermark.
    s = make("sarathi", num_blocks=10, watermark=0.2)
    add(s, 0, 20, 2)
    add(s, 1, 13, 2)
    assert step(s)[0] == "r0:20"
    assert s.block_manager.num_free == 5
    assert step(s) == ("r0:1", [0])
    assert run(s) == ["r1:13", "r1:1"]


def test_sarathi_preemption_restarts_the_newest_and_re_prefills_prompt_plus_generated() -> None:
    # 3 blocks of 4 tokens; three 4-token prompts fill them. r0's first decode needs a 2nd block: the newest
    # (r2, the end of the running list) is restarted; then r1 finds no free block and nobody newer: it restarts
    # itself. Each re-prefills its prompt + its 1 generated token = 5 tokens once 2 blocks are free.
    s = make("sarathi", num_blocks=3)
    seqs = [add(s, i, 4, 3) for i in range(3)]
    assert step(s)[0] == "r0:4;r1:4;r2:4"
    assert step(s)[0] == "r0:1"
    assert s.num_preemptions == 2 and [q.seq_id for q in s.waiting] == [1, 2]
    assert seqs[1].num_prefill_tokens == 5 and seqs[1].num_computed_tokens == 0 and seqs[1].block_table == []
    assert run(s) == ["r0:1", "r1:5", "r1:1", "r2:5", "r2:1"]
    assert [q.num_restarts for q in seqs] == [0, 1, 1]
    assert all(q.num_generated == 3 for q in seqs)


def test_sarathi_running_decode_needs_one_free_block_even_without_growing() -> None:
    # Vidur's "at least one free block" for running requests: r0 holds 2 blocks (room for 8 tokens) and has
    # 6 tokens, yet with no block free it restarts itself and re-prefills its 4 + 2 tokens at once.
    s = make("sarathi", num_blocks=2)
    add(s, 0, 4, 3)
    add(s, 1, 4, 2)
    assert step(s)[0] == "r0:4;r1:4"
    assert step(s)[0] == "r0:1"  # r1 restarted (newest); its 5 tokens need 2 blocks, none free
    assert step(s) == ("r0:6", [0])  # r0 restarted itself, re-admitted at once: its 3rd token
    assert step(s) == ("r1:5", [1])
    assert s.num_preemptions == 2


def test_sarathi_preemption_mid_chunked_prefill_starts_the_prefill_over() -> None:
    # budget 4, 4 blocks of 4 tokens. r1's prompt of 8 is chunked (3 tokens next to r0's decode); at each next
    # step r0 finds no free block and restarts r1 (newest), which is re-admitted from token 0 in the same step:
    # its chunks are 3, 3, 3, 3 (never 3 then 5). When r0's 9th token needs a 3rd block, r1 no longer fits
    # (it needs 2, 1 is free) and waits until r0 is done, then prefills 4 + 4.
    s = make("sarathi", num_blocks=4, budget=4)
    add(s, 0, 4, 6)
    r1 = add(s, 1, 8, 1)
    assert run(s) == ["r0:4"] + ["r0:1;r1:3"] * 4 + ["r0:1", "r1:4", "r1:4"]
    assert s.num_preemptions == 4 and r1.num_prefill_tokens == 8 and r1.num_generated == 1


def test_sarathi_a_chunk_that_leaves_one_prompt_token_is_still_a_prefill() -> None:
    s = make("sarathi", budget=4)
    seq = add(s, 0, 5, 2)
    add(s, 1, 2, 2)
    assert step(s)[0] == "r0:4"
    batch = s.schedule()  # r0's last prompt token goes after decodes (none) as a prefill, then r1 fits in 3
    assert [(e.seq.seq_id, e.num_q_tokens, e.is_prefill, e.samples) for e in batch.entries] == [(0, 1, True, True), (1, 2, True, True)]
    s.postprocess(batch, [1, 2])
    assert seq.is_prefill_complete and run(s) == ["r0:1;r1:1"]


def test_vllm_whole_prompts_first_within_the_token_cap() -> None:
    s = make("vllm", budget=10)
    add(s, 0, 6, 2)
    add(s, 1, 6, 2)
    add(s, 2, 4, 2)
    # r0 (6) alone: r1 would make 12 > 10, and r2 may not overtake r1 (first come, first served).
    assert run(s) == ["r0:6", "r1:6;r2:4", "r0:1;r1:1;r2:1"]


def test_vllm_decodes_only_when_no_prompt_is_admitted() -> None:
    s = make("vllm", budget=10)
    add(s, 0, 4, 3)
    assert step(s)[0] == "r0:4"
    add(s, 1, 4, 2)
    assert run(s) == ["r1:4", "r0:1;r1:1", "r0:1"]


def test_vllm_batch_cap() -> None:
    s = make("vllm", cap=2)
    for i in range(3):
        add(s, i, 3, 2)
    assert run(s) == ["r0:3;r1:3", "r0:1;r1:1", "r2:3", "r2:1"]


def test_vllm_preemption_restarts_the_newest_and_re_prefills_whole() -> None:
    s = make("vllm", num_blocks=3)
    for i in range(3):
        add(s, i, 4, 3)
    assert step(s)[0] == "r0:4;r1:4;r2:4"
    # r0 needs a block: r2 (newest) restarts; r1 finds none free and restarts itself; r0 decodes alone.
    assert step(s)[0] == "r0:1"
    assert s.num_preemptions == 2
    # The queue is [r1, r2] with 5-token prompts (2 blocks each); 1 block is free, so r0 decodes to the end.
    assert run(s) == ["r0:1", "r1:5", "r1:1", "r2:5", "r2:1"]


def test_vllm_restarted_prompt_over_the_token_cap_is_a_clear_error() -> None:
    # Vidur 0.0.26 would stall here (its simulation ends with pending requests); the engine says why.
    s = make("vllm", num_blocks=2, budget=4)
    add(s, 0, 4, 3)
    add(s, 1, 4, 2)
    assert [step(s)[0] for _ in range(3)] == ["r0:4", "r1:4", "r0:1"]  # r1 restarted: 5 tokens, over the cap
    # r0 then finds no free block and restarts itself: 6 tokens, over the cap too, and nothing runs.
    with pytest.raises(InputError, match="request 0 can never run again: restarted after a preemption with 6 tokens"):
        s.schedule()


def test_arrival_order_sorts_running_requests_and_ties_keep_the_list_order() -> None:
    # Two requests arriving together (same ns): decodes keep the order in which they were admitted.
    s = make("sarathi")
    add(s, 5, 3, 3, arrival=10)
    add(s, 2, 3, 3, arrival=10)
    assert run(s) == ["r5:3;r2:3", "r5:1;r2:1", "r5:1;r2:1"]


@pytest.mark.parametrize(
    "kwargs, prompt, decode, message",
    [
        ({"num_blocks": 4}, 10, 7, "needs 5 KV blocks of 4 tokens, but the pool of 4 blocks leaves 4"),
        ({"num_blocks": 10, "watermark": 0.2}, 30, 3, "leaves 8 above the watermark"),
        ({}, 4000, 97, "exceeds the model's context of 4096"),
        ({}, 0, 3, "needs >= 1 prompt token"),
        ({"budget": 8}, 9, 1, "policy prefills whole prompts"),
    ],
)
def test_requests_that_could_never_run_are_refused_clearly(kwargs: dict, prompt: int, decode: int, message: str) -> None:
    policy = "vllm" if "budget" in kwargs else "sarathi"
    s = make(policy, **kwargs)
    with pytest.raises(InputError, match=message):
        add(s, 0, prompt, decode)
    assert not s.has_unfinished()


def test_unknown_policy_and_bad_limits_are_clear_errors() -> None:
    with pytest.raises(InputError, match=r"engine policy 'orca' is unknown; choose one of \['sarathi', 'vllm'\]"):
        make("orca")
    with pytest.raises(InputError, match="max_requests_per_batch=0"):
        make("sarathi", cap=0)
    with pytest.raises(InputError, match="num_blocks=0"):
        make("sarathi", num_blocks=0)


def test_postprocess_checks_the_number_of_sampled_tokens() -> None:
    s = make("sarathi")
    add(s, 0, 3, 2)
    batch = s.schedule()
    with pytest.raises(ValueError, match="2 sampled tokens for 1 sampling entries"):
        s.postprocess(batch, [1, 2])


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_stress_ledger_covers_every_entry_and_tokens_survive_restarts(policy: str) -> None:
    """Random workloads on small pools: the invariants of specs/engine.md hold at every iteration."""
    rng = random.Random(policy)
    total_restarts = 0
    for trial in range(12):
        block_size = rng.choice([1, 4, 16])
        budget = rng.choice([8, 32, 256])
        cap = rng.choice([1, 3, 8])
        num_requests = 25
        lengths = [(rng.randint(1, min(budget, 120) if policy == "vllm" else 120), rng.randint(1, 30)) for _ in range(num_requests)]
        longest = max(p + d for p, d in lengths)
        num_blocks = -(-longest // block_size) + rng.randint(0, 12)
        s = make(policy, num_blocks=num_blocks, block_size=block_size, budget=max(budget, longest) if policy == "vllm" else budget, cap=cap)
        arrivals = sorted(rng.randint(0, 60) for _ in range(num_requests))
        seqs = [Sequence(i, [1000 + i] * p, p, d, arrival_time_ns=t) for i, ((p, d), t) in enumerate(zip(lengths, arrivals))]
        clock, nxt = 0, 0
        while nxt < num_requests or s.has_unfinished():
            while nxt < num_requests and seqs[nxt].arrival_time_ns <= clock:
                s.add(seqs[nxt])
                nxt += 1
            batch = s.schedule()
            clock += 1
            if batch is None:
                continue
            held = [b for q in seqs if q.status is SequenceStatus.RUNNING for b in q.block_table]
            assert len(held) == len(set(held)) and len(held) + s.block_manager.num_free == num_blocks
            assert len(batch.entries) <= cap and sum(q.status is SequenceStatus.RUNNING for q in seqs) <= cap
            prefill_tokens = sum(e.num_q_tokens for e in batch.entries if e.is_prefill)
            decodes = sum(not e.is_prefill for e in batch.entries)
            assert prefill_tokens + decodes <= max(s.config.max_batch_tokens, decodes)
            for e in batch.entries:
                q = e.seq
                assert e.start == q.num_computed_tokens and e.num_q_tokens >= 1
                assert e.is_prefill == (e.start < q.num_prefill_tokens)
                assert e.samples == (e.start + e.num_q_tokens == len(q.token_ids))
                # The ledger reserves exactly what the iteration stores (no slack, no shortfall).
                assert len(q.block_table) == -(-max(q.num_prefill_tokens, e.start + e.num_q_tokens) // block_size)
            sampled = [q.seq_id * 100 + q.num_generated for q in (e.seq for e in batch.entries if e.samples)]
            s.postprocess(batch, sampled)
        assert s.block_manager.num_free == num_blocks and not s.running and not s.waiting
        for q in seqs:
            assert q.status is SequenceStatus.FINISHED
            assert q.token_ids == [1000 + q.seq_id] * q.num_prompt_tokens + [q.seq_id * 100 + g for g in range(q.max_tokens)]
        total_restarts += s.num_preemptions
    assert total_restarts > 0  # the pools were small enough to preempt


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_scheduling_ahead_then_revising_forms_the_batches_of_scheduling_at_the_end(policy: str) -> None:
    """The engine forms iteration n+1 while n runs (n's tokens still placeholders), then revises it at n's end with
    the requests that arrived meanwhile (engine/engine.py). Iteration by iteration, that gives the very batches,
    preemptions and tokens of scheduling at n's end, on random workloads with small pools and bursty arrivals."""
    rng = random.Random(f"ahead-{policy}")
    extended = replaced = deferred_count = preemptions = 0
    for trial in range(30):
        block_size = rng.choice([1, 4, 16])
        budget = rng.choice([8, 32, 256])
        cap = rng.choice([1, 3, 8])
        lengths = [(rng.randint(1, min(budget, 100) if policy == "vllm" else 100), rng.randint(1, 25))
                   for _ in range(20)]
        longest = max(p + d for p, d in lengths)
        num_blocks = -(-longest // block_size) + rng.randint(0, 15)
        kwargs = dict(num_blocks=num_blocks, block_size=block_size, cap=cap,
                      budget=max(budget, longest) if policy == "vllm" else budget)
        a, b = make(policy, **kwargs), make(policy, **kwargs)  # a: decides at each end; b: ahead, then revises
        arrive: dict[int, list[int]] = {}
        for i in range(len(lengths)):
            arrive.setdefault(rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 21, 34]) + rng.randint(0, 40), []).append(i)

        def seq(i: int) -> Sequence:
            return Sequence(i, [1000 + i] * lengths[i][0], lengths[i][0], lengths[i][1], arrival_time_ns=i)

        def tokens(batch: ScheduledBatch | None, placeholder: int) -> list[int]:
            return [e.seq.seq_id * 100 + e.seq.num_generated - placeholder for e in batch.entries if e.samples]

        prev_a = prev_b = None
        sampled_b: list[int] = []
        seqs_a, seqs_b = [], []
        for it in range(2000):
            if prev_a is not None:
                a.postprocess(prev_a, tokens(prev_a, 0))
            for i in arrive.get(it, []):
                seqs_a.append(seq(i))
                a.add(seqs_a[-1])
            want = a.schedule()

            if prev_b is not None:
                sampled_b = tokens(prev_b, 0)
                b.postprocess(prev_b, None)
            deferred = not b.can_schedule_ahead()
            ahead = None if deferred else b.schedule()
            for i in arrive.get(it, []):
                seqs_b.append(seq(i))
                b.add(seqs_b[-1])
            if ahead is not None and it in arrive:
                open_ = b._open
                got = b.revise(ahead)
                extended += got is not ahead and open_ == "admit"
                replaced += got is not ahead and open_ == "replace"
            elif ahead is None and (it in arrive or deferred):
                got = b.schedule()
                deferred_count += deferred
            else:
                got = ahead
            if prev_b is not None:
                b.settle(prev_b, sampled_b)
            assert (want is None) == (got is None), (trial, it)
            if want is not None:
                assert members(want) == members(got), (trial, it)
            assert [q.block_table for q in seqs_a] == [q.block_table for q in seqs_b], (trial, it)
            prev_a, prev_b = want, got
            if want is None and not a.has_unfinished() and it > max(arrive):
                break
        assert a.num_preemptions == b.num_preemptions
        preemptions += a.num_preemptions
        assert [q.token_ids for q in seqs_a] == [q.token_ids for q in seqs_b]
        assert all(q.status is SequenceStatus.FINISHED for q in seqs_b) and len(seqs_b) == len(lengths)
    assert extended > 0 and preemptions > 0  # the runs did revise, and did preempt
    if policy == "vllm":
        assert replaced > 0 and deferred_count > 0
