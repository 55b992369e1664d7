"""The runner on hand-built batches and the whole engine against ``model.generate`` (CPU, float32)."""

from __future__ import annotations

import pytest
import torch

from _qwen3_tiny import TINY, engine_config, hf_model, prompts
from gpu_simulate_test.engine.model import Qwen3Model
from gpu_simulate_test.engine.runner import ModelRunner
from gpu_simulate_test.engine.sequence import BatchEntry, ScheduledBatch, Sequence, SequenceStatus


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
    # 4: decode-only (the graph-shaped path); the device table holds exactly the current tables
    got = runner.run(ScheduledBatch((_entry(a, 14, 1, True, False), _entry(b, 7, 1, True, False))))
    assert got == [_greedy_next(hf, a.token_ids), _greedy_next(hf, b.token_ids)]
    for seq in (a, b):
        row = runner.tables.row(seq, new_index := [], [])
        assert new_index == []  # nothing left to upload
        assert runner.tables.table[row, : len(seq.block_table)].tolist() == seq.block_table


def test_block_table_rows_are_reused_and_reclaimed(hf):
    cfg = engine_config(max_requests_per_batch=2)
    runner = ModelRunner(cfg, Qwen3Model.from_hf_state_dict(TINY, hf.state_dict(), torch.float32, torch.device("cpu")))
    s1, s2, s3 = _seq(1, [1], [4]), _seq(2, [1], [5]), _seq(3, [1], [6])
    idx, blocks = [], []
    r1, r2 = runner.tables.row(s1, idx, blocks), runner.tables.row(s2, idx, blocks)
    assert blocks == [4, 5] and idx == [r1 * runner.tables.width, r2 * runner.tables.width]
    with pytest.raises(RuntimeError, match="more than 2 sequences"):
        runner.tables.row(s3, [], [])
    s1.status = SequenceStatus.WAITING  # preempted: its row may go to another sequence
    assert runner.tables.row(s3, [], []) == r1
    runner.release(s2)
    s1.status = SequenceStatus.RUNNING
    assert runner.tables.row(s1, idx := [], blocks := []) == r2 and blocks == [4]
