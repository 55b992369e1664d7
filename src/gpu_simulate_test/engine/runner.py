"""The model runner: one ``ScheduledBatch`` in, its sampled tokens out, with as little host work as the step allows.

Each step packs its int32 inputs (token ids, positions, KV slots, context lengths, block-table rows, ``cu_seqlens_q``,
the rows that sample, and the block-table entries added since the last step) into one pinned host buffer and sends
them in one copy. Block tables live on the device (one row per running sequence) and only their new blocks travel.
Decode-only batches up to the largest graph bucket replay a CUDA graph captured at start-up for the smallest bucket
that fits (padding rows: slot -1, context 0); the graph holds the whole forward, the LM head and the argmax. Other
batches run eagerly. Sampling is greedy; the sampled tokens are the one device-to-host copy and the one sync of a step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from gpu_simulate_test.engine.config import EngineConfig
from gpu_simulate_test.engine.model import AttentionInputs, Qwen3Model
from gpu_simulate_test.engine.sequence import BatchEntry, ScheduledBatch, Sequence, SequenceStatus
from gpu_simulate_test.errors import InputError


class TritonLoads:
    """Counts Triton kernel variants loaded onto the device in this process (each one a compilation or a disk-cache
    load): after start-up the count must not move, or a measured step paid for a compile."""

    count = 0

    @classmethod
    def install(cls) -> None:
        try:
            from triton import knobs
        except ImportError:  # no triton: nothing can compile
            return
        knobs.runtime.kernel_load_end_hook.add(cls._on_load)

    @classmethod
    def _on_load(cls, *args: object) -> None:
        cls.count += 1


class _BlockTables:
    """The block tables of the running sequences, one device row each; a step uploads only the blocks added since."""

    def __init__(self, num_rows: int, width: int, device: torch.device) -> None:
        self.width = width
        self.table = torch.zeros(num_rows, width, dtype=torch.int32, device=device)
        self._free = list(range(num_rows - 1, -1, -1))
        self._state: dict[Sequence, list[int]] = {}  # seq -> [row, num_restarts seen, blocks uploaded]

    def row(self, seq: Sequence, new_index: list[int], new_block: list[int]) -> int:
        """The sequence's row; appends the flat table index and block id of each block not uploaded yet."""
        st = self._state.get(seq)
        blocks = seq.block_table
        if st is not None and st[2] == len(blocks) and st[1] == seq.num_restarts:  # the common case: no news
            return st[0]
        if st is None:
            st = self._state[seq] = [self._take_row(), seq.num_restarts, 0]
        if st[1] != seq.num_restarts or st[2] > len(blocks):  # restarted: a new block table from scratch
            st[1], st[2] = seq.num_restarts, 0
        if st[2] < len(blocks):
            if len(blocks) > self.width:
                raise RuntimeError(f"sequence {seq.seq_id} holds {len(blocks)} blocks, more than the model's "
                                   f"context allows ({self.width})")
            base = st[0] * self.width
            new_index.extend(range(base + st[2], base + len(blocks)))
            new_block.extend(blocks[st[2]:])
            st[2] = len(blocks)
        return st[0]

    def release(self, seq: Sequence) -> None:
        st = self._state.pop(seq, None)
        if st is not None:
            self._free.append(st[0])

    def _take_row(self) -> int:
        if not self._free:  # rows of sequences that hold no blocks any more (preempted and waiting, finished)
            for seq in [s for s in self._state if s.status is not SequenceStatus.RUNNING]:
                self.release(seq)
        if not self._free:
            raise RuntimeError(f"more than {self.table.shape[0]} sequences hold KV blocks at once")
        return self._free.pop()


_ALIGN = 16  # int32 elements: each input starts 64-byte aligned, as Triton specialises pointers on alignment


@dataclass(frozen=True)
class _Layout:
    """Where a step's inputs sit in the packed int32 buffer: T tokens, B entries, S sampling, D new blocks.

    Every segment starts aligned whatever T and B are: a Triton kernel compiled for an aligned pointer must never
    meet an unaligned one mid-run (that would compile a second variant inside a measured step). The segments up to
    ``logits`` do not move with S and D."""

    T: int
    B: int
    S: int
    D: int

    @functools.cached_property
    def offsets(self) -> dict[str, int]:
        sizes = (("ids", self.T), ("pos", self.T), ("slots", self.T), ("seq_lens", self.B), ("rows", self.B),
                 ("cu", self.B + 1), ("logits", self.S), ("new_index", self.D), ("new_block", self.D))
        out, o = {}, 0
        for name, n in sizes:
            out[name] = o
            o += -(-n // _ALIGN) * _ALIGN
        out["end"] = o
        return out

    @property
    def end(self) -> int:
        return self.offsets["end"]

    def view(self, buf: torch.Tensor, name: str) -> torch.Tensor:
        o = self.offsets[name]
        n = {"ids": self.T, "pos": self.T, "slots": self.T, "seq_lens": self.B, "rows": self.B, "cu": self.B + 1,
             "logits": self.S, "new_index": self.D, "new_block": self.D}[name]
        return buf[o:o + n]


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    tokens: torch.Tensor  # [bs] int64, written by each replay


class ModelRunner:
    """Runs the model on scheduled batches; owns the KV cache, the step buffers and the CUDA graphs."""

    def __init__(self, config: EngineConfig, model: Qwen3Model) -> None:
        self.config = config
        self.model = model
        self.device = model.embed_tokens.device
        self.dtype = model.embed_tokens.dtype
        shape = config.model
        self.max_seqs = config.max_requests_per_batch
        # Vidur's policies take every running decode up to the batch cap, even past the token budget
        self.max_tokens = max(config.max_batch_tokens, self.max_seqs)
        width = math.ceil(shape.max_position_embeddings / config.block_size)
        self.tables = _BlockTables(self.max_seqs, width, self.device)
        cuda = self.device.type == "cuda"
        worst = _Layout(self.max_tokens, self.max_seqs, self.max_seqs, self.max_seqs * width)
        self._host = torch.empty(worst.end, dtype=torch.int32, pin_memory=cuda)
        self._host_np = self._host.numpy()
        self._dev = torch.empty(worst.end, dtype=torch.int32, device=self.device) if cuda else self._host
        self._tokens_host = torch.empty(self.max_seqs, dtype=torch.int64, pin_memory=cuda)
        self._done = torch.cuda.Event() if cuda else None
        self._arange = np.arange(shape.max_position_embeddings + 1, dtype=np.int32)  # positions, cu_seqlens
        self.graph_sizes = sorted({b for b in config.cuda_graph_batch_sizes
                                   if 0 < b <= min(self.max_seqs, self.max_tokens)}) if cuda else []
        self.graphs: dict[int, _Graph] = {}
        self.num_captures = 0
        self.last_graph_size: Optional[int] = None
        self.kv_cache: Optional[torch.Tensor] = None

    # ---- start-up ---------------------------------------------------------------------------------------------

    def allocate_kv_cache(self, num_blocks: int) -> None:
        """The pool ``[2, num_layers, num_blocks, block_size, num_kv_heads, head_dim]``, zeroed (never NaN)."""
        s = self.config.model
        shape = (2, s.num_layers, num_blocks, self.config.block_size, s.num_kv_heads, s.head_dim)
        self.kv_cache = None
        try:
            self.kv_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        except torch.OutOfMemoryError:
            gib = math.prod(shape) * self.model.embed_tokens.element_size() / 2**30
            raise InputError(f"a KV pool of {num_blocks} blocks ({gib:.1f} GiB) does not fit in the device's memory; "
                             "lower num_blocks (or leave it null to size it from gpu_memory_utilization)") from None

    @torch.inference_mode()
    def profile_memory(self) -> tuple[int, int]:
        """Bytes over what is allocated now that (a) the largest eager step and (b) a decode step at the largest
        graph bucket (the graphs' pool) reach at their peak: dry runs over a throw-away KV cache."""
        tokens = self.config.max_batch_tokens
        self.allocate_kv_cache(math.ceil(tokens / self.config.block_size))
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        peaks = []
        for case in ([(0, tokens)], [(0, 1)] * self.max_seqs):  # the longest prefill; the most sampled rows
            torch.cuda.reset_peak_memory_stats()
            self._run_synthetic(case)
            peaks.append(torch.cuda.max_memory_allocated() - base)
        graph_reserve = 0
        if self.graph_sizes:
            torch.cuda.reset_peak_memory_stats()
            self._run_synthetic([(0, 1)] * self.graph_sizes[-1])
            graph_reserve = torch.cuda.max_memory_allocated() - base
        self.kv_cache = None
        torch.cuda.empty_cache()
        return max(peaks), graph_reserve

    def warmup(self) -> None:
        """Eager steps over the shapes a run meets (decodes, fresh and continued prefills, mixed), so that every
        kernel variant they need is compiled and loaded now and not inside a measured step."""
        bs = self.config.block_size
        cases = [[(0, 1)], [(0, 1)] * 2, [(0, 1)] * 16, [(0, 1)] * 17,  # decodes (start, n): start 0 reads 1 token
                 [(0, 2)], [(0, 16)], [(0, 17)], [(bs, 2)], [(bs + 1, 16)], [(bs, 17)],
                 [(0, 1), (0, 1), (bs, 16)], [(0, 1), (0, 17)]]
        for case in cases:
            if sum(n for _, n in case) <= self.max_tokens and len(case) <= self.max_seqs:
                self._run_synthetic(case)

    @torch.inference_mode()
    def capture_graphs(self) -> None:
        """One graph per bucket, largest first, all in one memory pool; counted in ``num_captures``."""
        if not self.graph_sizes:
            return
        pool = None
        for bs in reversed(self.graph_sizes):
            layout = _Layout(bs, bs, 0, 0)
            self._fill_padding(layout, 0)
            self._dev[:layout.end].copy_(self._host[:layout.end])
            self._forward(layout, None)  # eager once: kernels loaded, workspaces allocated, before capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                tokens = self._forward(layout, None)
            pool = graph.pool() if pool is None else pool
            self.graphs[bs] = _Graph(graph, tokens)
            self.num_captures += 1
        torch.cuda.synchronize()

    def _forward(self, layout: _Layout, logits_indices: Optional[torch.Tensor]) -> torch.Tensor:
        """The greedy tokens of a step whose inputs are on the device at ``layout``."""
        v = functools.partial(layout.view, self._dev)
        tables = self.tables.table.index_select(0, v("rows"))
        attn = AttentionInputs(v("slots"), v("cu"), v("seq_lens"), tables)
        return self.model.forward(v("ids"), v("pos"), attn, self.kv_cache, logits_indices).argmax(-1)

    # ---- one step ---------------------------------------------------------------------------------------------

    def graph_size(self, batch: ScheduledBatch) -> Optional[int]:
        """The bucket whose graph runs this batch, or None (eager)."""
        if not self.graphs or not batch.is_decode_only or len(batch.entries) > self.graph_sizes[-1]:
            return None
        n = len(batch.entries)
        return next(b for b in self.graph_sizes if b >= n)

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch, allow_graph: bool = True) -> list[int]:
        """Run one iteration; return the sampled token of each entry whose ``samples`` is set, in entry order.
        ``last_graph_size`` then says which graph bucket ran it (None: eager)."""
        bs = self.graph_size(batch) if allow_graph else None
        self.last_graph_size = bs
        entries = batch.entries
        layout = self._fill(entries, batch.num_tokens if bs is None else bs, pad_to=bs)
        self._dev[:layout.end].copy_(self._host[:layout.end], non_blocking=True)
        if layout.D:
            new_index, new_block = layout.view(self._dev, "new_index"), layout.view(self._dev, "new_block")
            self.tables.table.view(-1).index_put_((new_index,), new_block)
        if bs is None:
            return self._to_host(self._forward(layout, layout.view(self._dev, "logits")), layout.S)
        graph = self.graphs[bs]
        graph.graph.replay()
        return self._to_host(graph.tokens, len(entries))

    def release(self, seq: Sequence) -> None:
        """Forget a finished sequence (its block-table row returns to the free rows)."""
        self.tables.release(seq)

    def _fill(self, entries: tuple[BatchEntry, ...], num_tokens: int, pad_to: Optional[int]) -> _Layout:
        """Write the step's inputs into the pinned host buffer (``pad_to``: a graph bucket's rows); their layout."""
        h, bs = self._host_np, self.config.block_size
        T, B = num_tokens, len(entries) if pad_to is None else pad_to
        o = _Layout(T, B, 0, 0).offsets
        o_ids, o_pos, o_slot = o["ids"], o["pos"], o["slots"]
        dec_at: list[int] = []
        dec_ids: list[int] = []
        dec_pos: list[int] = []
        dec_slot: list[int] = []
        seq_lens: list[int] = []
        rows: list[int] = []
        sampling: list[int] = []
        new_index: list[int] = []
        new_block: list[int] = []
        end = 0
        row = self.tables.row
        for seq, p, n, samples, _ in entries:
            table = seq.block_table
            if n == 1:  # Python scalars: cheaper than numpy for one token
                dec_at.append(end)
                dec_ids.append(seq.token_ids[p])
                dec_pos.append(p)
                dec_slot.append(table[p // bs] * bs + p % bs)
            else:
                pos = self._arange[p:p + n]
                h[o_ids + end:o_ids + end + n] = seq.token_ids[p:p + n]
                h[o_pos + end:o_pos + end + n] = pos
                first = p // bs
                blocks = np.array(table[first:(p + n - 1) // bs + 1], dtype=np.int32)
                h[o_slot + end:o_slot + end + n] = blocks[pos // bs - first] * bs + pos % bs
            end += n
            seq_lens.append(p + n)
            rows.append(row(seq, new_index, new_block))
            if samples:
                sampling.append(end - 1)
        if len(dec_at) == end:  # decode-only: the entries are the tokens, in order
            h[o_ids:o_ids + end], h[o_pos:o_pos + end], h[o_slot:o_slot + end] = dec_ids, dec_pos, dec_slot
        elif dec_at:
            at = np.asarray(dec_at)
            h[o_ids + at], h[o_pos + at], h[o_slot + at] = dec_ids, dec_pos, dec_slot
        n = len(entries)
        h[o["seq_lens"]:o["seq_lens"] + n] = seq_lens
        h[o["rows"]:o["rows"] + n] = rows
        layout = _Layout(T, B, 0 if pad_to is not None else len(sampling), len(new_index))
        if pad_to is None:
            cu = h[o["cu"]:o["cu"] + n + 1]
            cu[0] = 0
            np.cumsum([e.num_q_tokens for e in entries], out=cu[1:])
            h[o["logits"]:o["logits"] + layout.S] = sampling
        else:
            self._fill_padding(layout, n)
        if layout.D:
            o = layout.offsets
            h[o["new_index"]:o["new_index"] + layout.D] = new_index
            h[o["new_block"]:o["new_block"] + layout.D] = new_block
        return layout

    def _fill_padding(self, layout: _Layout, start: int) -> None:
        """Rows ``start..B`` of a graph bucket: token 0 at position 0, no KV slot, context 0 (attention gives 0);
        ``cu_seqlens_q`` one token a row."""
        h, o, B = self._host_np, layout.offsets, layout.B
        for name, value in (("ids", 0), ("pos", 0), ("slots", -1), ("seq_lens", 0), ("rows", 0)):
            h[o[name] + start:o[name] + B] = value
        h[o["cu"]:o["cu"] + B + 1] = self._arange[:B + 1]

    def _to_host(self, tokens: torch.Tensor, n: int) -> list[int]:
        if self._done is None:
            return tokens[:n].tolist()
        self._tokens_host[:n].copy_(tokens[:n], non_blocking=True)
        self._done.record()
        self._done.synchronize()
        return self._tokens_host[:n].tolist()

    def _run_synthetic(self, case: list[tuple[int, int]]) -> None:
        """Run entries (start, n) of throw-away sequences whose blocks are 0, 1, 2, ... of the pool, wrapped around
        (their K/V is garbage that no real sequence reads: a sequence reads only slots it wrote)."""
        bs, pool = self.config.block_size, self.kv_cache.shape[2]
        entries = []
        for i, (start, n) in enumerate(case):
            seq = Sequence(seq_id=-1 - i, token_ids=[0] * (start + n), num_prompt_tokens=start + n, max_tokens=1,
                           status=SequenceStatus.RUNNING, num_computed_tokens=start,
                           block_table=[b % pool for b in range(math.ceil((start + n) / bs))])
            entries.append(BatchEntry(seq=seq, start=start, num_q_tokens=n, samples=True, is_prefill=n > 1))
        self.run(ScheduledBatch(entries=tuple(entries)), allow_graph=False)
        for e in entries:
            self.tables.release(e.seq)
