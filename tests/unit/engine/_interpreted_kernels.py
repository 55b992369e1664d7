"""The Triton kernels under ``TRITON_INTERPRET=1`` on CPU tensors, against the plain-torch references (float32).

Not collected by itself (the name does not start with ``test_``): ``test_kernels.py`` runs it with pytest in a
subprocess whose environment sets ``TRITON_INTERPRET=1`` before anything imports the kernels, since triton reads
the variable when ``@triton.jit`` decorates. Every check draws its own random inputs, poisons outputs (and unused
cache slots) with NaN so that an unwritten element or a read past the context fails, and compares by
``||out - ref|| / ||ref||``: the interpreter computes in float32 like the reference, so only the order of sums and
``exp2`` against ``exp`` differ (measured ~1e-7; the bound is 1e-5).
"""

from __future__ import annotations

import dataclasses
import zlib

import pytest
import torch
from triton.runtime import interpreter

from gpu_simulate_test.engine.kernels import activation, attention, cache, matmul, norm, reference, rope

TOL = 1e-5

if not isinstance(attention._paged_attention_kernel, interpreter.InterpretedFunction):
    raise RuntimeError("run this module with TRITON_INTERPRET=1 set before the kernels are imported")


def _patch_numpy_scalars() -> None:
    """triton 3.6's interpreter turns a scalar into an int with ``int(1-element array)``, which numpy >= 2.4
    rejects (triton-lang/triton#9171, fixed upstream after 3.6): convert through a 0-d view instead."""
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(())))

    interpreter._patch_lang_tensor = patched


_patch_numpy_scalars()


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert not out.isnan().any(), "NaN in the output: an element was not written, or a poisoned slot was read"
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture
def gen(request: pytest.FixtureRequest) -> torch.Generator:
    """Fresh inputs for every check (seeded by the test's id, so a failure reproduces)."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


# --- norms and activation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens,hidden", [(5, 48), (3, 64), (1, 200)])
def test_rms_norm(gen: torch.Generator, tokens: int, hidden: int) -> None:
    x, w = randn(gen, tokens, hidden), randn(gen, hidden)
    assert rel_err(norm.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6)) < TOL


def test_rms_norm_of_strided_rows(gen: torch.Generator) -> None:
    base = randn(gen, 6, 80)
    x, w = base[:, 8:72], randn(gen, 64)  # row stride 80, not 64
    assert rel_err(norm.rms_norm(x, w, 1e-5), reference.rms_norm(x, w, 1e-5)) < TOL


@pytest.mark.parametrize("tokens,hidden", [(4, 48), (2, 128)])
def test_add_rms_norm_updates_the_residual_in_place(gen: torch.Generator, tokens: int, hidden: int) -> None:
    x, residual, w = randn(gen, tokens, hidden), randn(gen, tokens, hidden), randn(gen, hidden)
    ref_residual = residual.clone()
    ref_out, _ = reference.add_rms_norm(x, ref_residual, w, 1e-6)
    out, returned = norm.add_rms_norm(x, residual, w, 1e-6)
    assert returned is residual
    assert rel_err(residual, ref_residual) < TOL
    assert rel_err(out, ref_out) < TOL


@pytest.mark.parametrize("tokens,inter", [(3, 40), (2, 1100)])  # 1100: more than one column block
def test_silu_and_mul(gen: torch.Generator, tokens: int, inter: int) -> None:
    x = randn(gen, tokens, 2 * inter) * 3
    assert rel_err(activation.silu_and_mul(x), reference.silu_and_mul(x)) < TOL


# --- qk-norm + RoPE and the KV store -------------------------------------------------------------------------


def _fused_qkv(gen: torch.Generator, tokens: int, n_q: int, n_kv: int, head_dim: int):
    """A fused qkv buffer with spare columns, and q/k/v as views into it: the token stride is none of theirs."""
    qkv = randn(gen, tokens, (n_q + 2 * n_kv) * head_dim + 16)
    return (qkv, *_views(qkv, n_q, n_kv, head_dim))


def _views(qkv: torch.Tensor, n_q: int, n_kv: int, head_dim: int):
    tokens = qkv.shape[0]
    return (qkv[:, : n_q * head_dim].view(tokens, n_q, head_dim),
            qkv[:, n_q * head_dim: (n_q + n_kv) * head_dim].view(tokens, n_kv, head_dim),
            qkv[:, (n_q + n_kv) * head_dim: (n_q + 2 * n_kv) * head_dim].view(tokens, n_kv, head_dim))


def _poisoned_cache(num_blocks: int, page: int, n_kv: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.full((num_blocks, page, n_kv, head_dim), float("nan")),
            torch.full((num_blocks, page, n_kv, head_dim), float("nan")))


def _assert_same_cache(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(got.isnan(), ref.isnan()), "a slot was written that should not be, or the reverse"
    torch.testing.assert_close(got.nan_to_num(), ref.nan_to_num(), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("rows", [1, 2, 5, 16, 33])
@pytest.mark.parametrize("tile", [None, matmul.SkinnyTile(16, 32, 4, 3, True), matmul.SkinnyTile(8, 64, 4, 3, False)])
def test_skinny_matmul(gen: torch.Generator, rows: int, tile: matmul.SkinnyTile | None) -> None:
    """Columns not a multiple of the tile (a partial last program), K not a multiple of ``block_k`` (masked steps),
    both product paths, rows padded to 16 / 64 or to a power of two; nothing written past ``rows``."""
    n, k = 72, 80
    x, w = randn(gen, rows, k), randn(gen, n, k)
    assert rel_err(matmul.skinny_matmul(x, w, tile), x @ w.T) < TOL
    with pytest.raises(ValueError, match="rows"):
        matmul.skinny_matmul(randn(gen, matmul.MAX_ROWS + 1, k), w)


@pytest.mark.parametrize("rows,block_k,k", [(1, 128, 96), (3, 32, 96), (16, 32, 1100)])
def test_skinny_add_rms_norm_matmul(gen: torch.Generator, rows: int, block_k: int, k: int) -> None:
    """The add + norm recomputed by every program, the new residual written once to a new tensor; the norm's
    statistic over one masked step of K, several, or (16 rows, K = 1,100) many."""
    n = 40
    x, residual, norm_w, w = randn(gen, rows, k), randn(gen, rows, k), randn(gen, k), randn(gen, n, k)
    before = residual.clone()
    ref_y, ref_res = reference.add_rms_norm_linear(x, residual.clone(), norm_w, 1e-6, w)
    y, res = matmul.skinny_add_rms_norm_matmul(x, residual, norm_w, 1e-6, w,
                                               matmul.SkinnyTile(8, block_k, 4, 3, False))
    assert torch.equal(residual, before), "the residual is read, never written in place"
    assert rel_err(res, ref_res) < TOL and rel_err(y, ref_y) < TOL


@pytest.mark.parametrize("rows", [1, 2])
def test_skinny_silu_and_mul_matmul(gen: torch.Generator, rows: int) -> None:
    inter, n = 72, 24
    gate_up, w = randn(gen, rows, 2 * inter) * 3, randn(gen, n, inter)
    out = matmul.skinny_silu_and_mul_matmul(gate_up, w, matmul.SkinnyTile(8, 32, 4, 3, False))
    assert rel_err(out, reference.silu_and_mul_linear(gate_up, w)) < TOL


@pytest.mark.parametrize("n_q,n_kv,head_dim", [(4, 2, 32), (6, 3, 16)])  # 6 / 3: heads padded to 8 / 4
def test_qk_norm_rope_in_place_on_fused_views(gen: torch.Generator, n_q: int, n_kv: int, head_dim: int) -> None:
    tokens = 7
    qkv, q, k, _ = _fused_qkv(gen, tokens, n_q, n_kv, head_dim)
    qw, kw = randn(gen, head_dim), randn(gen, head_dim)
    positions = torch.randint(0, 300, (tokens,), generator=gen)
    cos_sin = reference.rope_cos_sin(head_dim, 300, 1e6)
    ref_qkv = qkv.clone()
    ref_q, ref_k, _ = _views(ref_qkv, n_q, n_kv, head_dim)
    reference.qk_norm_rope(ref_q, ref_k, qw, kw, positions, cos_sin, 1e-6)
    rope.qk_norm_rope(q, k, qw, kw, positions, cos_sin, 1e-6)
    assert rel_err(q, ref_q) < TOL and rel_err(k, ref_k) < TOL
    untouched = (n_q + n_kv) * head_dim  # v and the spare columns
    assert torch.equal(qkv[:, untouched:], ref_qkv[:, untouched:])


def _slots(gen: torch.Generator, tokens: int, num_blocks: int, page: int) -> torch.Tensor:
    """Distinct slots in shuffled blocks, two of them -1 (graph padding)."""
    slots = torch.randperm(num_blocks * page, generator=gen)[:tokens]
    slots[torch.randperm(tokens, generator=gen)[:2]] = -1
    return slots


@pytest.mark.parametrize("n_kv,head_dim,page", [(2, 32, 4), (3, 16, 8)])
def test_store_kv_skips_negative_slots(gen: torch.Generator, n_kv: int, head_dim: int, page: int) -> None:
    tokens, num_blocks = 9, 6
    _, _, k, v = _fused_qkv(gen, tokens, 4, n_kv, head_dim)
    slots = _slots(gen, tokens, num_blocks, page)
    k_cache, v_cache = _poisoned_cache(num_blocks, page, n_kv, head_dim)
    ref_k_cache, ref_v_cache = k_cache.clone(), v_cache.clone()
    reference.store_kv(k, v, ref_k_cache, ref_v_cache, slots)
    cache.store_kv(k, v, k_cache, v_cache, slots)
    _assert_same_cache(k_cache, ref_k_cache)
    _assert_same_cache(v_cache, ref_v_cache)


def test_qk_norm_rope_store_kv_matches_the_composition(gen: torch.Generator) -> None:
    tokens, n_q, n_kv, head_dim, page, num_blocks = 8, 4, 2, 32, 4, 5
    qkv, q, k, v = _fused_qkv(gen, tokens, n_q, n_kv, head_dim)
    ref_qkv = qkv.clone()
    ref_q, ref_k, ref_v = _views(ref_qkv, n_q, n_kv, head_dim)
    qw, kw = randn(gen, head_dim), randn(gen, head_dim)
    positions = torch.randint(0, 64, (tokens,), generator=gen, dtype=torch.int32)
    cos_sin = reference.rope_cos_sin(head_dim, 64, 1e6)
    slots = _slots(gen, tokens, num_blocks, page)
    k_cache, v_cache = _poisoned_cache(num_blocks, page, n_kv, head_dim)
    ref_k_cache, ref_v_cache = k_cache.clone(), v_cache.clone()
    reference.qk_norm_rope_store_kv(ref_q, ref_k, ref_v, qw, kw, positions, cos_sin, 1e-6, ref_k_cache, ref_v_cache,
                                    slots)
    rope.qk_norm_rope_store_kv(q, k, v, qw, kw, positions, cos_sin, 1e-6, k_cache, v_cache, slots)
    assert rel_err(qkv, ref_qkv) < TOL
    _assert_same_cache(k_cache, ref_k_cache)
    _assert_same_cache(v_cache, ref_v_cache)


# --- paged attention -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    q: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    cu_seqlens_q: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor


def make_batch(gen: torch.Generator, seqs: list[tuple[int, int]], n_q: int, n_kv: int, head_dim: int,
               page: int) -> Batch:
    """``seqs``: (new tokens, context after the step). Blocks are drawn shuffled from a pool with spare blocks;
    every slot outside a context, and every table entry past one, points at NaN."""
    need = [-(-ctx // page) for _, ctx in seqs]
    width = max(need) + 2
    num_blocks = sum(need) + 3
    k_cache, v_cache = _poisoned_cache(num_blocks, page, n_kv, head_dim)
    order = torch.randperm(num_blocks - 1, generator=gen).to(torch.int32) + 1  # block 0: all NaN, the filler
    tables = torch.zeros(len(seqs), width, dtype=torch.int32)
    used = 0
    for b, (_, ctx) in enumerate(seqs):
        blocks = order[used: used + need[b]]
        used += need[b]
        tables[b, : need[b]] = blocks
        kv = randn(gen, 2, need[b] * page, n_kv, head_dim)
        kv[:, ctx:] = float("nan")
        k_cache[blocks.long()] = kv[0].view(-1, page, n_kv, head_dim)
        v_cache[blocks.long()] = kv[1].view(-1, page, n_kv, head_dim)
    lengths = torch.tensor([n for n, _ in seqs])
    cu = torch.zeros(len(seqs) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    tokens = int(cu[-1])
    q = _fused_qkv(gen, tokens, n_q, n_kv, head_dim)[1]
    return Batch(q, k_cache, v_cache, cu, torch.tensor([c for _, c in seqs], dtype=torch.int32), tables)


def small_plan(num_splits: int) -> attention.AttentionPlan:
    """Tiles small enough that tiny contexts span several, so every loop runs and masks bite."""
    tile = attention.TileConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)
    return attention.AttentionPlan(decode=tile, prefill=tile, num_splits=num_splits)


def check_attention(batch: Batch, plan: attention.AttentionPlan | None) -> None:
    b = batch
    ref = reference.paged_attention(b.q, b.k_cache, b.v_cache, b.cu_seqlens_q, b.seq_lens, b.block_tables, 0.17)
    out = torch.full_like(b.q, float("nan"))
    got = attention.paged_attention(b.q, b.k_cache, b.v_cache, b.cu_seqlens_q, b.seq_lens, b.block_tables, 0.17,
                                    out=out, plan=plan)
    assert got is out
    assert rel_err(out, ref) < TOL
    padding = (b.seq_lens == 0).nonzero().flatten().tolist()
    for seq in padding:  # rows of graph padding are exact zeros
        rows = out[b.cu_seqlens_q[seq]: b.cu_seqlens_q[seq + 1]]
        assert torch.equal(rows, torch.zeros_like(rows))


# decodes, a chunk over a cached prefix, fresh prefills, a one-token prefill and a padding row, in one call
MIXED = [(1, 37), (9, 30), (12, 12), (1, 1), (20, 45), (1, 0), (2, 2)]


# 6 / 2: a group of 3 padded to 4; 5 splits: more parts than some contexts have tiles
@pytest.mark.parametrize("n_q,n_kv,num_splits", [(4, 2, 1), (6, 2, 5), (4, 4, 2)])
def test_paged_attention_mixed_batch(gen: torch.Generator, n_q: int, n_kv: int, num_splits: int) -> None:
    check_attention(make_batch(gen, MIXED, n_q, n_kv, 16, 4), small_plan(num_splits))


@pytest.mark.parametrize("num_splits", [1, 4])
def test_paged_attention_decode_batch_with_padding_rows(gen: torch.Generator, num_splits: int) -> None:
    decodes = [(1, 50), (1, 17), (1, 64), (1, 0), (1, 0)]
    check_attention(make_batch(gen, decodes, 4, 2, 32, 8), small_plan(num_splits))


# a mixed graph bucket: three real entries, the padding tokens as one sequence of context 0, two sequences with no
# token (the cache is NaN outside every context: padding that read a key would show)
MIXED_BUCKET = [(1, 37), (9, 30), (12, 12), (5, 0), (0, 0), (0, 0)]


@pytest.mark.parametrize("num_splits", [1, 3])
def test_paged_attention_mixed_bucket_padding(gen: torch.Generator, num_splits: int) -> None:
    check_attention(make_batch(gen, MIXED_BUCKET, 4, 2, 16, 4), small_plan(num_splits))


def balanced_plan(num_splits: int) -> attention.AttentionPlan:
    return dataclasses.replace(small_plan(num_splits), balanced=True)


# one long context among short ones (the longest sets an unbalanced launch's time), padding rows of context 0,
# a prefill chunk (no decode work), and more units than tiles
UNEVEN = [(1, 150), (1, 5), (1, 0), (7, 20), (1, 33), (1, 1), (1, 64), (1, 0)]


@pytest.mark.parametrize("num_splits", [2, 3, 8])
def test_paged_attention_balanced_splits(gen: torch.Generator, num_splits: int) -> None:
    """Split decode work dealt out by key tiles: each decode's chunks and their merge equal the reference, padding
    rows stay exact zeros, whatever the number of units against the tiles."""
    check_attention(make_batch(gen, UNEVEN, 4, 2, 16, 4), balanced_plan(num_splits))
    check_attention(make_batch(gen, MIXED_BUCKET, 4, 2, 16, 4), balanced_plan(num_splits))


def test_paged_attention_balanced_merge_takes_more_parts_than_its_width(gen: torch.Generator,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A long context alone with many units: its parts outnumber the merge's width, merged in several steps."""
    monkeypatch.setattr(attention, "MAX_SPLITS", 4)
    check_attention(make_batch(gen, [(1, 300), (1, 3)], 4, 2, 16, 4), balanced_plan(8))


def expected_work(seqs: list[tuple[int, int]], units: int, block_n: int) -> list[int]:
    """``decode_work``'s table worked out in Python: the fewest tiles a unit that fits, then the units in order."""
    tiles = [-(-ctx // block_n) if new == 1 else 0 for new, ctx in seqs]
    chunk = next(c for c in range(1, max(sum(tiles), 1) + 1) if sum(-(-t // c) for t in tiles) <= units)
    unit_seq, unit_tile, seq_first = [], [], []
    for b, t in enumerate(tiles):
        seq_first.append(len(unit_seq))
        for k in range(-(-t // chunk)):
            unit_seq.append(b)
            unit_tile.append(k * chunk)
    spare = units - len(unit_seq)
    return [chunk, *unit_seq, *[len(seqs)] * spare, *unit_tile, *[0] * spare, *seq_first]


# more sequences and units than one program of the work kernel lays out (WORK_UNITS): even contexts, one long
EVEN_MANY = [(1, 40)] * 69 + [(1, 700)] + [(5, 9)]


@pytest.mark.parametrize("seqs,num_splits", [(UNEVEN, 2), (UNEVEN, 3), (UNEVEN, 8), (MIXED_BUCKET, 3),
                                             (EVEN_MANY, 2), ([(1, 0), (0, 0)], 2)])
def test_decode_work_table(gen: torch.Generator, seqs: list[tuple[int, int]], num_splits: int) -> None:
    """The work table against the Python one: the fewest key tiles a unit at which the decode sequences' units fit
    (no work at all: chunk 1), each unit's sequence and first tile, spare units past the last sequence."""
    b = make_batch(gen, seqs, 4, 2, 16, 4)
    plan = balanced_plan(num_splits)
    work = attention.decode_work(b.cu_seqlens_q, b.seq_lens, b.block_tables, b.k_cache, plan)
    units = len(seqs) * num_splits
    got = work.tolist()
    want = expected_work(seqs, units, plan.decode.block_n)
    assert got[: 1 + units] == want[: 1 + units]  # chunk, unit_seq
    used = [u for u in range(units) if want[1 + u] < len(seqs)]  # a spare unit's first tile is never read
    assert [got[1 + units + u] for u in used] == [want[1 + units + u] for u in used]
    assert got[1 + 2 * units:] == want[1 + 2 * units:]


def test_paged_attention_balanced_whole_and_split_sequences(gen: torch.Generator) -> None:
    """Sequences of one unit write their output themselves (the merge skips them), beside one split in many, over
    work tables that several programs lay out."""
    check_attention(make_batch(gen, EVEN_MANY, 4, 2, 16, 4), balanced_plan(2))


def test_plan_attention_balanced_at_any_batch() -> None:
    """Balanced, every batch size gets at least two units a sequence and the split tiles: a long context among
    many short ones is split even where the batch fills the SMs."""
    for batch in (1, 8, 17, 40, 256):
        plain = attention.plan_attention(batch, 8, 40960, 132, torch.bfloat16, balanced=False)
        plan = attention.plan_attention(batch, 8, 40960, 132, torch.bfloat16, balanced=True)
        assert plan.balanced and plan.num_splits == max(plain.num_splits, 2)
        assert plan.decode == attention.DECODE_TILE
    assert attention.plan_attention(20, 8, 40960, 132, torch.bfloat16, balanced=False).decode == \
        attention.DECODE_TILE_FEW


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_paged_attention_shipped_tiles_span_full_and_partial_tiles(gen: torch.Generator, dtype: torch.dtype) -> None:
    """The tiles ``plan_attention`` ships for a dtype (bf16: decode keys in 64s, prefill rows in 128s; computed
    here in float32 all the same), with and without a split, and balanced: contexts long enough for unmasked
    tiles."""
    seqs = [(1, 150), (70, 200), (1, 64), (40, 40)]
    batch = make_batch(gen, seqs, 4, 2, 32, 16)
    plan = attention.plan_attention(len(seqs), 2, batch.block_tables.shape[1] * 16, 1, dtype, balanced=False)
    assert plan.num_splits == 1
    check_attention(batch, plan)
    check_attention(batch, dataclasses.replace(plan, num_splits=2))
    balanced = attention.plan_attention(len(seqs), 2, batch.block_tables.shape[1] * 16, 1, dtype, balanced=True)
    assert balanced.balanced and balanced.decode == plan.decode
    check_attention(batch, balanced)
