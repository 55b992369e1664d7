"""Paged attention in Triton: prefill chunks (with or without a cached prefix) and decodes, any mix in one call.

Two launches of one kernel, so that each kind of sequence gets the tile it needs:

- the decode launch, one program per (KV head, sequence, split): sequences with exactly one new token. Its rows are
  the query heads that share the KV head (GQA: K/V are read once for all of them), padded to the 16 rows ``tl.dot``
  needs. Split-KV (flash-decoding) cuts each context into ``num_splits`` ranges when ``batch x KV heads`` programs
  would leave SMs idle; a merge kernel combines the parts by their log-sum-exp. Each context is cut into
  ``num_splits`` parts, so at a small batch the longest context sets the launch's time; a balanced plan
  (``AttentionPlan.balanced``) deals all decode contexts' key tiles out in equal chunks over the same ``B x
  num_splits`` programs instead (a long context gets more of them), each program finding its sequence and chunk on
  the device from ``seq_lens``, the merge taking a sequence's run of parts however many.
- the prefill launch, one program per (block of ``block_q`` new tokens of one sequence, KV head): sequences with two
  or more new tokens, causal over the cached prefix and within the chunk. Which sequence a program serves is found
  on the device from ``cu_seqlens_q``: sequence b owns programs ``cu[b] // block_q + b`` up to the next sequence's,
  at least as many as its query blocks, so ``T // block_q + B`` programs always suffice.

Every grid depends on shapes and the plan only (tokens, sequences, KV heads, splits), never on the values in
``seq_lens`` or ``cu_seqlens_q``, and every integer that changes between steps is left unspecialised: a decode call
captured in a CUDA graph replays with new lengths, and a serving run compiles nothing after its first steps.
Padding (CUDA graph buckets): a sequence with no new token is skipped by both launches; a sequence of ``seq_len``
0 sees no key and gets zeros, whatever its number of new tokens. Precondition beyond the reference's: ``T > B``
whenever some sequence has two or more new tokens, since the prefill launch exists only then (``T == B`` is taken
for a decode-only batch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
MAX_SPLITS = 64  # the merge kernel's width: split-KV parts per decode sequence at most
SEARCH_BLOCK = 128  # sequences scanned per step when a prefill program looks up its sequence


@dataclass(frozen=True)
class TileConfig:
    """One launch's tiling: ``block_m`` rows (query tokens x the query heads of one KV head), ``block_n`` keys per
    inner step, and Triton's ``num_warps`` / ``num_stages`` (software-pipelining depth of the key loop)."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class AttentionPlan:
    """How one call is launched; ``plan_attention`` picks it from static shapes, tests and benchmarks override it."""

    decode: TileConfig
    prefill: TileConfig
    num_splits: int  # split-KV parts of each decode sequence (1: no split, no merge kernel)
    # with splits: the decode sequences' key tiles dealt out in equal chunks over all ``B x num_splits`` programs
    # (a long context gets more programs than a short one), instead of ``num_splits`` parts of each context
    balanced: bool = False


# Decode tiles, from the H200 sweep of 2026-12-02 (``bench_kernels.py --parts sweep``; 16x64 with 4 warps and 5
# stages shipped before): 2 warps and 3 stages (one K/V buffer in flight, a small program, many of them per SM) read
# K/V fastest wherever the launch has more programs than SMs or splits its contexts: batch 64 at KV 2,048 in 128 us
# (4.2 TB/s) against 173 us, batch 128 at KV 8,192 4.4 TB/s, batch 1 at KV 512 7.8 us against 9-11. Between one and
# two programs per SM without a split (batches 17-33 on Qwen3-0.6B's 8 KV heads), 128 keys a step with 4 warps:
# batch 32 at KV 2,048 in 71 us against 80. Prefill: wgmma, 234 registers, 132 KB, one program of 8 warps per SM;
# num_stages 5 gives K/V a second buffer behind the block-table load (triton 3.6, read off the TTGIR).
DECODE_TILE = TileConfig(block_m=16, block_n=64, num_warps=2, num_stages=3)
DECODE_TILE_FEW = TileConfig(block_m=16, block_n=128, num_warps=4, num_stages=3)
PREFILL_TILE = TileConfig(block_m=128, block_n=64, num_warps=8, num_stages=5)
# float32 (exact ``ieee`` dots, twice the bytes a tile): the tiles above would spill kilobytes a thread and fill
# shared memory; these compile without spills (decode) or with a few hundred bytes (prefill). Not a speed target.
DECODE_TILE_FP32 = TileConfig(block_m=16, block_n=64, num_warps=4, num_stages=2)
PREFILL_TILE_FP32 = TileConfig(block_m=32, block_n=32, num_warps=4, num_stages=2)


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


# Deal decode work out by key tiles (``AttentionPlan.balanced``) in every plan ``plan_attention`` makes: unbalanced,
# a batch's longest context sets the decode launch's time (studies/2026-12-02-native-h200-in-layer); benchmarks
# switch this off to compare.
BALANCE_SPLITS = True


def plan_attention(num_seqs: int, num_kv_heads: int, max_context: int, num_sms: int,
                   dtype: torch.dtype = torch.bfloat16, balanced: Optional[bool] = None) -> AttentionPlan:
    """Split decode contexts only when ``num_seqs x num_kv_heads`` programs cannot fill the SMs: then aim at two
    programs per SM, never more parts than key tiles in ``max_context`` (the block table's reach) or ``MAX_SPLITS``.
    Unsplit launches of one to two programs per SM take ``DECODE_TILE_FEW``. ``balanced`` (None:
    ``BALANCE_SPLITS``): the decode launch deals key tiles out over ``num_seqs x num_splits`` work units, at least
    two a sequence, so that a long context among short ones takes many programs at any batch size."""
    decode, prefill = (DECODE_TILE_FP32, PREFILL_TILE_FP32) if dtype.itemsize >= 4 else (DECODE_TILE, PREFILL_TILE)
    balanced = BALANCE_SPLITS if balanced is None else balanced
    programs = num_seqs * num_kv_heads
    splits = 1
    if programs < num_sms:
        splits = min(-(-2 * num_sms // programs), -(-max_context // decode.block_n), MAX_SPLITS)
    elif programs <= 2 * num_sms and dtype.itemsize < 4 and not balanced:
        decode = DECODE_TILE_FEW
    if balanced:
        splits = max(splits, 2)
    return AttentionPlan(decode=decode, prefill=prefill, num_splits=max(splits, 1), balanced=balanced)


@dataclass(frozen=True)
class Launches:
    """The grids of one call (decode: KV heads x sequences x splits; prefill: programs x KV heads), and the rows /
    query tokens of each program."""

    decode_grid: tuple[int, int, int]  # (KV heads, sequences, splits)
    decode_rows: int
    prefill_grid: Optional[tuple[int, int, int]]  # None: a decode-only batch (T == B)
    prefill_rows: int
    prefill_block_q: int


def launches(num_tokens: int, num_seqs: int, num_heads: int, num_kv_heads: int, plan: AttentionPlan) -> Launches:
    """What ``paged_attention`` launches for these shapes (the benchmark reports the grids against the SMs)."""
    group_pad = triton.next_power_of_2(num_heads // num_kv_heads)
    block_q = max(max(plan.prefill.block_m, 16, group_pad) // group_pad, 2)
    prefill = (num_tokens // block_q + num_seqs, num_kv_heads, 1) if num_tokens > num_seqs else None
    return Launches(decode_grid=(num_kv_heads, num_seqs, plan.num_splits),
                    decode_rows=max(plan.decode.block_m, group_pad), prefill_grid=prefill,
                    prefill_rows=block_q * group_pad, prefill_block_q=block_q)


@triton.jit
def _attend_tiles(acc, l_i, m_i, q, k_cache_ptr, v_cache_ptr, block_table_ptr, head_offset, q_pos, kv_end,
                  tile_lo, tile_hi, scale_log2, stride_cache_block, stride_cache_slot,
                  HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, PAGE: tl.constexpr, MASKED: tl.constexpr,
                  DOT_PRECISION: tl.constexpr):
    """Online softmax over key tiles ``tile_lo .. tile_hi``; MASKED applies causality and the context end (only
    the last tiles need it), and reads nothing past ``kv_end``, so unwritten cache slots never reach a product."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for tile in range(tile_lo, tile_hi):
        k_pos = tile * BLOCK_N + offs_n
        if MASKED:
            in_ctx = k_pos < kv_end
            block = tl.load(block_table_ptr + k_pos // PAGE, mask=in_ctx, other=0)
        else:
            block = tl.load(block_table_ptr + k_pos // PAGE)
        offset = block.to(tl.int64) * stride_cache_block + (k_pos % PAGE) * stride_cache_slot + head_offset
        if MASKED:
            k = tl.load(k_cache_ptr + offset[None, :] + offs_d[:, None], mask=in_ctx[None, :], other=0.0)
            v = tl.load(v_cache_ptr + offset[:, None] + offs_d[None, :], mask=in_ctx[:, None], other=0.0)
        else:
            k = tl.load(k_cache_ptr + offset[None, :] + offs_d[:, None])
            v = tl.load(v_cache_ptr + offset[:, None] + offs_d[None, :])
        s = tl.dot(q, k, input_precision=DOT_PRECISION) * scale_log2
        if MASKED:
            s = tl.where(k_pos[None, :] <= q_pos[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _decode_tiles_of(b, cu_seqlens_ptr, seq_lens_ptr, num_seqs, BLOCK_N: tl.constexpr):
    """Key tiles of sequences ``b`` (a vector): their context's, for a sequence with exactly one new token; else 0."""
    ok = b < num_seqs
    one = (tl.load(cu_seqlens_ptr + 1 + b, mask=ok, other=0) - tl.load(cu_seqlens_ptr + b, mask=ok, other=0)) == 1
    return tl.where(ok & one, tl.cdiv(tl.load(seq_lens_ptr + b, mask=ok, other=0), BLOCK_N), 0)


@triton.jit
def _units_at(chunk, cu_seqlens_ptr, seq_lens_ptr, num_seqs, BLOCK_N: tl.constexpr, SEARCH: tl.constexpr):
    """Work units the decode sequences take at ``chunk`` key tiles a unit."""
    units = 0
    for start in range(0, num_seqs, SEARCH):
        tiles = _decode_tiles_of(start + tl.arange(0, SEARCH), cu_seqlens_ptr, seq_lens_ptr, num_seqs, BLOCK_N)
        units += tl.sum(tl.cdiv(tiles, chunk), axis=0)
    return units


@triton.jit(do_not_specialize=["num_seqs", "num_units"])
def _decode_work_kernel(work_ptr, cu_seqlens_ptr, seq_lens_ptr, num_seqs, num_units,
                        BLOCK_N: tl.constexpr, SEARCH: tl.constexpr, UNITS: tl.constexpr):
    """The balanced decode launch's work table, once a step for every layer: ``[chunk, unit_seq[U], unit_tile[U],
    seq_first[B]]``. ``chunk`` is the fewest key tiles a unit at which the decode sequences, in order, each taking
    ceil(tiles / chunk) units, fit the ``U`` units (bisection between ceil(total / U) and ceil(total / (U - B)),
    which always fits); unit u serves sequence ``unit_seq[u]`` (B: none) from tile ``unit_tile[u]``; sequence b's
    units start at ``seq_first[b]``. Program p lays out units and sequences ``p * UNITS`` onwards."""
    total = 0
    for start in range(0, num_seqs, SEARCH):
        total += tl.sum(_decode_tiles_of(start + tl.arange(0, SEARCH), cu_seqlens_ptr, seq_lens_ptr, num_seqs,
                                         BLOCK_N), axis=0)
    lo = tl.maximum(tl.cdiv(total, num_units), 1)
    hi = tl.maximum(tl.cdiv(total, num_units - num_seqs), 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if _units_at(mid, cu_seqlens_ptr, seq_lens_ptr, num_seqs, BLOCK_N, SEARCH) <= num_units:
            hi = mid
        else:
            lo = mid + 1
    chunk = lo
    pid = tl.program_id(0)
    if pid == 0:
        tl.store(work_ptr, chunk)
    u = pid * UNITS + tl.arange(0, UNITS)  # these units, and these sequences
    unit_seq = tl.zeros([UNITS], tl.int32)
    unit_first = tl.zeros([UNITS], tl.int32)  # the first unit of the sequence unit u serves
    seq_first = tl.zeros([UNITS], tl.int32)
    done = 0  # units of the sequences before this block of them
    for start in range(0, num_seqs, SEARCH):
        b = start + tl.arange(0, SEARCH)
        units = tl.cdiv(_decode_tiles_of(b, cu_seqlens_ptr, seq_lens_ptr, num_seqs, BLOCK_N), chunk)
        # sequences whose units all come before unit u: a prefix, as units go to the sequences in order
        before = ((tl.cumsum(units, axis=0) + done)[None, :] <= u[:, None]) & (b < num_seqs)[None, :]
        unit_seq += tl.sum(before.to(tl.int32), axis=1)
        unit_first += tl.sum(tl.where(before, units[None, :], 0), axis=1)
        seq_first += tl.sum(tl.where(b[None, :] < u[:, None], units[None, :], 0), axis=1)
        done += tl.sum(units, axis=0)
    ok = u < num_units
    tl.store(work_ptr + 1 + u, unit_seq, mask=ok)
    tl.store(work_ptr + 1 + num_units + u, (u - unit_first) * chunk, mask=ok)
    tl.store(work_ptr + 1 + 2 * num_units + u, seq_first, mask=u < num_seqs)


@triton.jit(do_not_specialize=["num_seqs", "stride_block_table"])
def _paged_attention_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, part_acc_ptr, part_m_ptr, part_l_ptr, work_ptr,
    cu_seqlens_ptr, seq_lens_ptr, block_tables_ptr, scale_log2, num_seqs,
    stride_q_tok, stride_q_head, stride_out_tok, stride_out_head,
    stride_cache_block, stride_cache_slot, stride_cache_head, stride_block_table,
    NUM_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    SEARCH: tl.constexpr, DOT_PRECISION: tl.constexpr, BALANCED: tl.constexpr = False,
):
    split = tl.program_id(2)
    num_splits = tl.num_programs(2)
    unit_lo = 0  # balanced decode: this program's key tiles, unit_lo .. unit_lo + chunk
    chunk = 1
    if BLOCK_Q == 1:
        kv_head = tl.program_id(0)
        if BALANCED:
            # balanced decode launch: program (h, u, s) is work unit u * splits + s, a chunk of one decode
            # sequence's key tiles, looked up in the step's work table (``decode_work``)
            unit = tl.program_id(1) * num_splits + split
            seq = tl.load(work_ptr + 1 + unit)
            chunk = tl.load(work_ptr)
            unit_lo = tl.load(work_ptr + 1 + num_seqs * num_splits + unit)
            if seq >= num_seqs:  # a spare unit
                return
        else:
            # decode launch, grid (KV heads, sequences, splits): program (h, b) serves sequence b if it has exactly
            # one new token. Sequence-major, so that a bucket's padding sequences (no work) are the last programs
            # the SMs get: interleaved with the real ones they left SMs with up to twice the average work (64
            # decodes in the bucket of 96: 189 us a layer against 130 alone)
            seq = tl.program_id(1)
        q_lo = tl.load(cu_seqlens_ptr + seq)
        q_hi = tl.load(cu_seqlens_ptr + seq + 1)
        if q_hi - q_lo != 1:
            return
        tile_lo = q_lo
    else:
        # prefill launch, grid (programs, KV heads, 1), heaviest tiles (last sequences, last query blocks) first
        kv_head = tl.program_id(1)
        pid = tl.num_programs(0) - 1 - tl.program_id(0)
        seq = 0
        for start in range(0, num_seqs, SEARCH):
            b = start + tl.arange(0, SEARCH)
            nxt = tl.load(cu_seqlens_ptr + 1 + b, mask=b < num_seqs, other=0)
            seq += tl.sum(((nxt // BLOCK_Q + b + 1 <= pid) & (b < num_seqs)).to(tl.int32), axis=0)
        q_lo = tl.load(cu_seqlens_ptr + seq)
        q_hi = tl.load(cu_seqlens_ptr + seq + 1)
        tile_lo = q_lo + (pid - q_lo // BLOCK_Q - seq) * BLOCK_Q
        if (q_hi - q_lo < 2) | (tile_lo >= q_hi):
            return
    seq_len = tl.load(seq_lens_ptr + seq)
    ctx_start = seq_len - (q_hi - q_lo)  # position of the sequence's first new token

    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    tok = tile_lo + offs_m // GROUP_PAD
    head = kv_head * GROUP + offs_m % GROUP_PAD
    row_ok = (offs_m % GROUP_PAD < GROUP) & (tok < q_hi)
    q_pos = ctx_start + (tok - q_lo)
    q = tl.load(q_ptr + tok[:, None] * stride_q_tok + head[:, None] * stride_q_head + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)

    # keys 0 .. kv_end - 1 are seen by the tile's last token; keys below kv_all by all of its tokens
    kv_end = ctx_start + tl.minimum(tile_lo + BLOCK_Q, q_hi) - q_lo
    kv_all = tl.maximum(ctx_start + tile_lo - q_lo + 1, 0)
    num_tiles = tl.cdiv(kv_end, BLOCK_N)
    per_split = tl.cdiv(num_tiles, num_splits)
    t_lo = split * per_split
    t_hi = tl.minimum(t_lo + per_split, num_tiles)
    whole = num_splits == 1  # this program has the sequence's every key: it writes the output, no merge
    if BALANCED:  # (decode launch only)
        t_lo = unit_lo
        t_hi = tl.minimum(unit_lo + chunk, num_tiles)
        whole = num_tiles <= chunk
    t_mid = tl.minimum(tl.maximum(kv_all // BLOCK_N, t_lo), t_hi)

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)  # finite: a row with no visible key in a tile stays NaN-free
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    block_table_ptr = block_tables_ptr + seq.to(tl.int64) * stride_block_table
    head_offset = kv_head * stride_cache_head
    acc, l_i, m_i = _attend_tiles(acc, l_i, m_i, q, k_cache_ptr, v_cache_ptr, block_table_ptr, head_offset, q_pos,
                                  kv_end, t_lo, t_mid, scale_log2, stride_cache_block, stride_cache_slot,
                                  HEAD_DIM, BLOCK_N, PAGE, False, DOT_PRECISION)
    acc, l_i, m_i = _attend_tiles(acc, l_i, m_i, q, k_cache_ptr, v_cache_ptr, block_table_ptr, head_offset, q_pos,
                                  kv_end, t_mid, t_hi, scale_log2, stride_cache_block, stride_cache_slot,
                                  HEAD_DIM, BLOCK_N, PAGE, True, DOT_PRECISION)

    if not whole:
        # unnormalised parts, [B, NUM_HEADS, splits] (+ HEAD_DIM), merged by _merge_splits_kernel; balanced:
        # [units, NUM_HEADS]
        if BALANCED:
            part = unit * NUM_HEADS + head
        else:
            part = (seq * NUM_HEADS + head) * num_splits + split
        tl.store(part_m_ptr + part, m_i, mask=row_ok)
        tl.store(part_l_ptr + part, l_i, mask=row_ok)
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=row_ok[:, None])
    else:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]  # no visible key (seq_len 0): zeros
        tl.store(out_ptr + tok[:, None] * stride_out_tok + head[:, None] * stride_out_head + offs_d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


@triton.jit(do_not_specialize=["num_splits", "num_seqs"])
def _merge_splits_kernel(part_acc_ptr, part_m_ptr, part_l_ptr, out_ptr, cu_seqlens_ptr, seq_lens_ptr, work_ptr,
                         num_splits, num_seqs, stride_out_tok, stride_out_head,
                         NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, SPLITS_PAD: tl.constexpr,
                         BLOCK_N: tl.constexpr, BALANCED: tl.constexpr):
    """One program per (decode sequence, query head): rescale each part to the common maximum and normalise.
    One compiled variant serves every split count (SPLITS_PAD is MAX_SPLITS). Balanced: the sequence's parts are
    its run of work units (the work table's), merged SPLITS_PAD at a time; a sequence of one unit has its output
    from that unit already."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    q_lo = tl.load(cu_seqlens_ptr + seq)
    if tl.load(cu_seqlens_ptr + seq + 1) - q_lo != 1:
        return
    s = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, HEAD_DIM)
    if BALANCED:
        count = tl.cdiv(tl.cdiv(tl.load(seq_lens_ptr + seq), BLOCK_N), tl.load(work_ptr))
        if count == 1:
            return
        first = tl.load(work_ptr + 1 + 2 * num_seqs * num_splits + seq)
        m_run = tl.max(tl.full([SPLITS_PAD], -1.0e30, tl.float32), axis=0)  # finite: no part, no NaN
        l_run = tl.sum(tl.zeros([SPLITS_PAD], tl.float32), axis=0)
        acc_run = tl.zeros([HEAD_DIM], tl.float32)
        for s0 in range(0, count, SPLITS_PAD):
            ok = s0 + s < count
            part = (first + s0 + s) * NUM_HEADS + head
            m = tl.load(part_m_ptr + part, mask=ok, other=float("-inf"))
            l = tl.load(part_l_ptr + part, mask=ok, other=0.0)
            acc = tl.load(part_acc_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], mask=ok[:, None], other=0.0)
            m_new = tl.maximum(m_run, tl.max(m, axis=0))
            alpha = tl.exp2(m_run - m_new)
            w = tl.exp2(m - m_new)
            l_run = l_run * alpha + tl.sum(l * w, axis=0)
            acc_run = acc_run * alpha + tl.sum(acc * w[:, None], axis=0)
            m_run = m_new
        out = acc_run / tl.where(l_run > 0, l_run, 1.0)
    else:
        part = (seq * NUM_HEADS + head) * num_splits + s
        ok = s < num_splits
        m = tl.load(part_m_ptr + part, mask=ok, other=float("-inf"))
        l = tl.load(part_l_ptr + part, mask=ok, other=0.0)
        acc = tl.load(part_acc_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], mask=ok[:, None], other=0.0)
        w = tl.exp2(m - tl.max(m, axis=0))
        total = tl.sum(l * w, axis=0)
        out = tl.sum(acc * w[:, None], axis=0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + q_lo * stride_out_tok + head * stride_out_head + offs_d, out.to(out_ptr.dtype.element_ty))


WORK_UNITS = 64  # work units (and sequences) one program of ``_decode_work_kernel`` lays out


def _plan_for(seq_lens: torch.Tensor, block_tables: torch.Tensor, k_cache: torch.Tensor) -> AttentionPlan:
    """``plan_attention`` for these inputs: the plan both ``paged_attention`` and ``decode_work`` take by default."""
    num_sms = 1  # triton's interpreter (CPU tensors): no SMs to fill
    if k_cache.is_cuda:
        num_sms = _num_sms(k_cache.device.index if k_cache.device.index is not None else torch.cuda.current_device())
    _, page, num_kv_heads, _ = k_cache.shape
    return plan_attention(seq_lens.shape[0], num_kv_heads, block_tables.shape[1] * page, num_sms, k_cache.dtype)


def decode_work(cu_seqlens_q: torch.Tensor, seq_lens: torch.Tensor, block_tables: torch.Tensor,
                k_cache: torch.Tensor, plan: Optional[AttentionPlan] = None) -> Optional[torch.Tensor]:
    """The work table of a balanced decode launch (``_decode_work_kernel``), or None where ``plan`` (None: the
    default for these inputs) does not balance. Every layer of a step reads the same table, so the model makes it
    once a step and hands it to each ``paged_attention``."""
    plan = _plan_for(seq_lens, block_tables, k_cache) if plan is None else plan
    if not plan.balanced or plan.num_splits < 2:
        return None
    num_seqs = seq_lens.shape[0]
    units = num_seqs * plan.num_splits
    work = torch.empty(1 + 2 * units + num_seqs, device=seq_lens.device, dtype=torch.int32)
    _decode_work_kernel[(triton.cdiv(units, WORK_UNITS),)](work, cu_seqlens_q, seq_lens, num_seqs, units,
                                                           BLOCK_N=plan.decode.block_n, SEARCH=SEARCH_BLOCK,
                                                           UNITS=WORK_UNITS, num_warps=4)
    return work


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cu_seqlens_q: torch.Tensor,
                    seq_lens: torch.Tensor, block_tables: torch.Tensor, scale: float,
                    out: Optional[torch.Tensor] = None, work: Optional[torch.Tensor] = None,
                    plan: Optional[AttentionPlan] = None) -> torch.Tensor:
    """``reference.paged_attention`` in Triton (layouts there). ``plan``: None picks it from the shapes. ``work``:
    the step's ``decode_work`` table for this plan (None: made here when the plan balances)."""
    num_tokens, num_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    num_seqs = seq_lens.shape[0]
    if k_cache.stride() != v_cache.stride() or k_cache.stride(-1) != 1 or q.stride(-1) != 1:
        raise ValueError("paged_attention: K and V caches need one layout, head_dim contiguous (q too)")
    if head_dim & (head_dim - 1) or num_heads % num_kv_heads:
        raise ValueError(f"paged_attention: head_dim {head_dim} must be a power of two and {num_heads} query heads "
                         f"a multiple of {num_kv_heads} KV heads")
    plan = _plan_for(seq_lens, block_tables, k_cache) if plan is None else plan
    out = torch.empty_like(q) if out is None else out
    grids = launches(num_tokens, num_seqs, num_heads, num_kv_heads, plan)
    group = num_heads // num_kv_heads
    common = dict(NUM_HEADS=num_heads, GROUP=group, GROUP_PAD=triton.next_power_of_2(group), HEAD_DIM=head_dim,
                  PAGE=page, SEARCH=SEARCH_BLOCK, DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    args = (cu_seqlens_q, seq_lens, block_tables, scale * LOG2E, num_seqs, q.stride(0), q.stride(1),
            out.stride(0), out.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
            block_tables.stride(0))

    splits = plan.num_splits
    if splits > 1:
        part_acc = torch.empty(num_seqs * num_heads * splits * head_dim, device=q.device, dtype=torch.float32)
        part_m = torch.empty(num_seqs * num_heads * splits, device=q.device, dtype=torch.float32)
        part_l = torch.empty_like(part_m)
    else:
        part_acc = part_m = part_l = q.new_empty(1, dtype=torch.float32)  # never touched; float32 like the parts,
        # so that the split and the unsplit decode launches share one compiled kernel
    tile = plan.decode
    balanced = plan.balanced and splits > 1
    if balanced and work is None:
        work = decode_work(cu_seqlens_q, seq_lens, block_tables, k_cache, plan)
    work = work if balanced else seq_lens  # never read unbalanced; an int32 tensor all the same (one kernel)
    _paged_attention_kernel[grids.decode_grid](
        q, k_cache, v_cache, out, part_acc, part_m, part_l, work, *args, BLOCK_Q=1, BLOCK_M=grids.decode_rows,
        BLOCK_N=tile.block_n, num_warps=tile.num_warps, num_stages=tile.num_stages, BALANCED=balanced, **common)
    if splits > 1:
        _merge_splits_kernel[(num_seqs, num_heads)](
            part_acc, part_m, part_l, out, cu_seqlens_q, seq_lens, work, splits, num_seqs, out.stride(0),
            out.stride(1), NUM_HEADS=num_heads, HEAD_DIM=head_dim, SPLITS_PAD=MAX_SPLITS, BLOCK_N=tile.block_n,
            BALANCED=balanced, num_warps=4)
    if grids.prefill_grid is not None:
        tile = plan.prefill
        _paged_attention_kernel[grids.prefill_grid](
            q, k_cache, v_cache, out, part_acc, part_m, part_l, work, *args, BLOCK_Q=grids.prefill_block_q,
            BLOCK_M=grids.prefill_rows, BLOCK_N=tile.block_n, num_warps=tile.num_warps,
            num_stages=tile.num_stages, **common)
    return out
