"""The model runner: one ``ScheduledBatch`` in, its sampled tokens out, with as little host work as the step allows.

A step is packed (``prepare``), launched (``launch``) and waited for (``wait``) in three calls, so that the engine can
pack step n+1 while step n runs on the GPU. Packing writes its int32 inputs (token ids, positions, KV slots, context
lengths, block-table rows, ``cu_seqlens_q``, the rows that sample, the block-table entries added since the last step,
and where the token ids that step n is still sampling go) into one of two pinned host buffers and queues them on the
stream behind step n: one copy, the new table entries, and n's tokens gathered from its output on the device. At n's
end only the launch is left. Block tables live on the device (one row per running sequence) and only their new
blocks travel.

Every step that fits a bucket replays a CUDA graph captured at start-up; the graph holds the whole forward, the LM
head on a fixed ``B`` rows and the argmax. A bucket is a shape ``(T tokens, B sequences)``:

- decode buckets ``(B, B)``, B in ``cuda_graph_batch_sizes``: a decode-only batch of n <= B sequences; padding rows
  ``n..B`` are one token each (token 0, position 0, slot -1, context 0: attention gives 0).
- mixed buckets ``(T, B)``, T in ``cuda_graph_token_sizes``, B in ``cuda_graph_batch_sizes`` or one more than the
  largest of them (``mixed_seq_sizes``), ``B < T``: any batch
  with a prefill chunk, n entries and t tokens, runs at the smallest T >= t whose B >= n (+1 when T > t) is below
  T. The T - t padding tokens (slot -1) are the tokens of padding sequence n, whose context is 0 (no key visible:
  attention writes zeros, reads nothing); sequences n+1..B have no tokens. ``B < T`` keeps the attention's prefill
  launch in the graph (``launches``: it exists only when T > B).

Every kernel grid is a function of (T, B) only and every per-step value is read from the device buffer, so a
replay with new lengths is the eager step at the bucket's shape. Batches no bucket holds (chunks over the largest T,
more sequences than the largest B) run eagerly. Sampling is greedy; the sampled tokens are the one device-to-host
copy and the one sync of a step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

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
    """The block tables of the running sequences, one device row each; a step uploads only the blocks added since.

    Each packing starts a journal (``commit``) of what it changes here, so that a step packed ahead and then revised
    can be packed again from the state before it (``rollback``)."""

    def __init__(self, num_rows: int, width: int, device: torch.device) -> None:
        self.width = width
        self.table = torch.zeros(num_rows, width, dtype=torch.int32, device=device)
        self._free = list(range(num_rows - 1, -1, -1))
        self._state: dict[Sequence, list[int]] = {}  # seq -> [row, num_restarts seen, blocks uploaded]
        self._journal: list[tuple[str, Sequence, Optional[list[int]]]] = []

    def row(self, seq: Sequence, new_index: list[int], new_block: list[int]) -> int:
        """The sequence's row; appends the flat table index and block id of each block not uploaded yet."""
        st = self._state.get(seq)
        blocks = seq.block_table
        if st is not None and st[2] == len(blocks) and st[1] == seq.num_restarts:  # the common case: no news
            return st[0]
        if st is None:
            st = self._state[seq] = [self._take_row(), seq.num_restarts, 0]
            self._journal.append(("new", seq, None))
        else:
            self._journal.append(("set", seq, st.copy()))
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
            self._journal.append(("release", seq, st))

    def commit(self) -> None:
        self._journal.clear()

    def rollback(self) -> None:
        """Undo every change since the last ``commit``, last first (so the free rows end in their old order)."""
        for kind, seq, old in reversed(self._journal):
            if kind == "new":
                self._free.append(self._state.pop(seq)[0])
            elif kind == "set":
                self._state[seq] = old
            else:
                self._free.pop()
                self._state[seq] = old
        self._journal.clear()

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
    """Where a step's inputs sit in the packed int32 buffer: T tokens, B entries, S sampling, D new blocks, P token
    ids of the step before it, written in on the device (where in the buffer; which of its sampled tokens).

    Every segment starts aligned whatever T and B are: a Triton kernel compiled for an aligned pointer must never
    meet an unaligned one mid-run (that would compile a second variant inside a measured step). The segments up to
    ``logits`` do not move with S and D."""

    T: int
    B: int
    S: int
    D: int
    P: int = 0

    @property
    def offsets(self) -> dict[str, int]:
        return _spans(self.T, self.B, self.S, self.D, self.P)[0]

    @property
    def end(self) -> int:
        return _spans(self.T, self.B, self.S, self.D, self.P)[0]["end"]

    def view(self, buf: torch.Tensor, name: str) -> torch.Tensor:
        o, n = _spans(self.T, self.B, self.S, self.D, self.P)[1][name]
        return buf[o:o + n]


@functools.lru_cache(maxsize=4096)
def _spans(T: int, B: int, S: int, D: int, P: int) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """A layout's segment offsets (and ``end``) and (offset, length) by name: computed once per shape, as packing
    a step is on the critical path of an arrival."""
    sizes = (("ids", T), ("pos", T), ("slots", T), ("seq_lens", B), ("rows", B), ("cu", B + 1), ("logits", S),
             ("new_index", D), ("new_block", D), ("patch_at", P), ("patch_from", P))
    offsets, spans, o = {}, {}, 0
    for name, n in sizes:
        offsets[name], spans[name] = o, (o, n)
        o += -(-n // _ALIGN) * _ALIGN
    offsets["end"] = o
    return offsets, spans


class PackedStep(NamedTuple):
    """A step whose inputs are queued for the device: their layout, its sampling entries, and the graph bucket
    that runs it (None: eager)."""

    layout: _Layout
    num_sampled: int
    graph_shape: Optional[tuple[int, int]]


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    tokens: torch.Tensor  # [B] int64, written by each replay


def mixed_seq_sizes(seq_sizes: list[int]) -> list[int]:
    """The B of mixed buckets: the decode buckets' and one more than the largest, so that a batch at the largest B
    (a full batch of a server capped there: 127 decodes beside a chunk) still has a sequence for its padding tokens
    and replays a graph instead of running eagerly."""
    return sorted(set(seq_sizes) | {max(seq_sizes) + 1}) if seq_sizes else []


def graph_shapes(seq_sizes: list[int], token_sizes: list[int]) -> list[tuple[int, int]]:
    """The buckets ``(T, B)`` captured: ``(B, B)`` for decodes, ``(T, B)`` with ``B < T`` for mixed steps."""
    return sorted({(b, b) for b in seq_sizes}
                  | {(t, b) for t in token_sizes for b in mixed_seq_sizes(seq_sizes) if b < t})


def pick_graph_shape(num_tokens: int, num_seqs: int, decode_only: bool, seq_sizes: list[int],
                     token_sizes: list[int]) -> Optional[tuple[int, int]]:
    """The smallest bucket that holds a batch (fewest tokens first), or None: it runs eagerly."""
    if decode_only:
        return next(((b, b) for b in seq_sizes if b >= num_seqs), None)
    mixed_sizes = mixed_seq_sizes(seq_sizes)
    for t in token_sizes:
        if t < num_tokens:
            continue
        need = num_seqs + (t > num_tokens)  # one more sequence holds the padding tokens
        b = next((b for b in mixed_sizes if b >= need), None)
        if b is not None and b < t:
            return t, b
    return None


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
        # B and S up to one over the cap: a mixed bucket's padding sequence (``mixed_seq_sizes``)
        worst = _Layout(self.max_tokens, self.max_seqs + 1, self.max_seqs + 1, self.max_seqs * width, self.max_seqs)
        # two host buffers: a step is packed into one while the copy of the step before may still read the other;
        # each one's event marks its last copy done (a step packed again after a revision may come round early)
        self._hosts = [torch.empty(worst.end, dtype=torch.int32, pin_memory=cuda) for _ in range(2)]
        self._hosts_np = [h.numpy() for h in self._hosts]
        self._copied = [torch.cuda.Event() for _ in range(2)] if cuda else None
        self._turn = 0
        self._dev = torch.empty(worst.end, dtype=torch.int32, device=self.device)
        self._tokens_host = torch.empty(self.max_seqs, dtype=torch.int64, pin_memory=cuda)
        self._num_sampled = 0  # of the step launched last
        self._last_tokens: Optional[torch.Tensor] = None  # its sampled tokens on the device
        self._done = torch.cuda.Event() if cuda else None
        self._arange = np.arange(shape.max_position_embeddings + 1, dtype=np.int32)  # positions, cu_seqlens
        self.graph_sizes = sorted({b for b in config.cuda_graph_batch_sizes
                                   if 0 < b <= min(self.max_seqs, self.max_tokens)}) if cuda else []
        self.graph_token_sizes = sorted({t for t in config.cuda_graph_token_sizes
                                         if 1 < t <= self.max_tokens}) if self.graph_sizes else []
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.num_captures = 0
        self.last_graph_shape: Optional[tuple[int, int]] = None
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
        """Bytes over what is allocated now that (a) the largest eager step and (b) the largest graph buckets (the
        graphs' pool: the most tokens, the most sampled rows) reach at their peak: dry runs over a throw-away KV
        cache."""
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
        shapes = graph_shapes(self.graph_sizes, self.graph_token_sizes)
        for shape in {max(shapes), max(shapes, key=lambda tb: (tb[1], tb[0]))} if shapes else ():
            torch.cuda.reset_peak_memory_stats()
            self._forward(self._load_padding(*shape))
            graph_reserve = max(graph_reserve, torch.cuda.max_memory_allocated() - base)
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
        """One graph per bucket (``graph_shapes``), largest first, all in one memory pool; counted in
        ``num_captures``. Each is then replayed once on its padding (which touches no K/V): a graph's first launch
        uploads it to the device, which must not happen inside a measured step."""
        pool = None
        for shape in reversed(graph_shapes(self.graph_sizes, self.graph_token_sizes)):
            layout = self._load_padding(*shape)
            self._forward(layout)  # eager once: kernels loaded, workspaces allocated, before capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                tokens = self._forward(layout)
            pool = graph.pool() if pool is None else pool
            self.graphs[shape] = _Graph(graph, tokens)
            self.num_captures += 1
        for shape, graph in self.graphs.items():
            self._load_padding(*shape)
            graph.graph.replay()
        torch.cuda.synchronize()

    def _load_padding(self, num_tokens: int, num_seqs: int) -> _Layout:
        """A bucket's inputs with no real entry (all padding), on the device: what capture and profiling run."""
        layout = self._fill(self._hosts_np[0], (), num_tokens, pad_to=num_seqs)[0]
        self._dev[:layout.end].copy_(self._hosts[0][:layout.end])
        return layout

    def _forward(self, layout: _Layout) -> torch.Tensor:
        """The greedy tokens of the rows in the ``logits`` segment of a step whose inputs are on the device at
        ``layout``."""
        v = functools.partial(layout.view, self._dev)
        tables = self.tables.table.index_select(0, v("rows"))
        attn = AttentionInputs(v("slots"), v("cu"), v("seq_lens"), tables)
        return self.model.forward(v("ids"), v("pos"), attn, self.kv_cache, v("logits")).argmax(-1)

    # ---- one step ---------------------------------------------------------------------------------------------

    def graph_shape(self, batch: ScheduledBatch) -> Optional[tuple[int, int]]:
        """The bucket ``(T, B)`` whose graph runs this batch, or None (eager)."""
        if not self.graphs:
            return None
        return pick_graph_shape(batch.num_tokens, len(batch.entries), batch.is_decode_only, self.graph_sizes,
                                self.graph_token_sizes)

    def run(self, batch: ScheduledBatch, allow_graph: bool = True, pad_to: Optional[tuple[int, int]] = None
            ) -> list[int]:
        """Run one iteration now; return the sampled token of each entry whose ``samples`` is set, in entry order.
        ``last_graph_shape`` then says which graph bucket ran it (None: eager). ``pad_to``: run eagerly at this
        bucket's padded inputs (what its graph replays; tests compare the two)."""
        self.launch(self.prepare(batch, allow_graph=allow_graph, pad_to=pad_to))
        return self.wait()

    def prepare(self, batch: ScheduledBatch, pending: Optional[dict[Sequence, int]] = None, allow_graph: bool = True,
                pad_to: Optional[tuple[int, int]] = None) -> PackedStep:
        """Pack a step's inputs and queue them for the device behind the step in flight (stream order: they land
        once it has ended): one copy, the new block-table entries, and the token ids it is still sampling
        (``pending``: those sequences, by their index among its sampled tokens), taken from its output on the
        device. Launching is then all that is left (``launch``)."""
        shape = self.graph_shape(batch) if allow_graph and pad_to is None else None
        pad = shape or pad_to
        self.tables.commit()  # from here on, what packing changes can be rolled back (discard)
        self._turn ^= 1
        host = self._hosts[self._turn]
        if self._copied is not None:
            self._copied[self._turn].synchronize()  # done long ago, but for a revision
        layout, num_sampled = self._fill(self._hosts_np[self._turn], batch.entries,
                                         batch.num_tokens if pad is None else pad[0], None if pad is None else pad[1],
                                         pending)
        self._dev[:layout.end].copy_(host[:layout.end], non_blocking=True)
        if self._copied is not None:
            self._copied[self._turn].record()
        if layout.D:
            new_index, new_block = layout.view(self._dev, "new_index"), layout.view(self._dev, "new_block")
            self.tables.table.view(-1).index_put_((new_index,), new_block)
        if layout.P:
            tokens = self._last_tokens[layout.view(self._dev, "patch_from")].to(torch.int32)
            layout.view(self._dev, "ids").index_put_((layout.view(self._dev, "patch_at"),), tokens)
        return PackedStep(layout, num_sampled, shape)

    def discard(self, packed: PackedStep) -> None:
        """Forget a packed step that will not be launched (its batch was revised): the block-table rows it took and
        the uploads it planned go back to how they were on the host. What it queued for the device is overwritten
        by the next packing before any launch reads it (table entries past what a row's sequence uploaded are never
        read)."""
        self.tables.rollback()

    def launch(self, packed: PackedStep) -> None:
        """Start the step packed last on the device (asynchronously on a GPU); ``wait`` returns its tokens."""
        self.last_graph_shape = packed.graph_shape
        if packed.graph_shape is None:
            with torch.inference_mode():
                tokens = self._forward(packed.layout)
        else:
            graph = self.graphs[packed.graph_shape]
            graph.graph.replay()
            tokens = graph.tokens
        n = self._num_sampled = packed.num_sampled
        self._last_tokens = tokens
        self._tokens_host[:n].copy_(tokens[:n], non_blocking=True)
        if self._done is not None:
            self._done.record()

    def wait(self) -> list[int]:
        """The sampled tokens of the step launched last, once it has ended (on a GPU, the step's one sync)."""
        if self._done is not None:
            self._done.synchronize()
        return self._tokens_host[:self._num_sampled].tolist()

    def release(self, seq: Sequence) -> None:
        """Forget a finished sequence (its block-table row returns to the free rows)."""
        self.tables.release(seq)

    def _fill(self, h: np.ndarray, entries: tuple[BatchEntry, ...], num_tokens: int, pad_to: Optional[int],
              pending: Optional[dict[Sequence, int]] = None) -> tuple[_Layout, int]:
        """Write a step's inputs into the host buffer ``h``: their layout and the number of sampling entries. The
        pending tokens (placeholders in ``token_ids``) get a ``patch_at`` (their place among the ids) and a
        ``patch_from`` (their index among the step in flight's sampled tokens).
        ``pad_to``: a graph bucket's B, ``num_tokens`` its T (the padding: the module's docstring)."""
        bs = self.config.block_size
        T, B = num_tokens, len(entries) if pad_to is None else pad_to
        if pad_to is not None:
            n, t = len(entries), sum(e.num_q_tokens for e in entries)
            if n > B or t > T or (t < T and n == B) or (T != B and B >= T):
                raise RuntimeError(f"a batch of {n} entries and {t} tokens does not fit the graph bucket ({T}, {B})")
        o = _Layout(T, B, 0, 0).offsets
        o_ids, o_pos, o_slot = o["ids"], o["pos"], o["slots"]
        dec_at: list[int] = []
        dec_ids: list[int] = []
        dec_pos: list[int] = []
        dec_slot: list[int] = []
        seq_lens: list[int] = []
        ends: list[int] = []  # cu_seqlens_q after each entry
        rows: list[int] = []
        sampling: list[int] = []
        new_index: list[int] = []
        new_block: list[int] = []
        patch_at: list[int] = []
        patch_from: list[int] = []
        end = 0
        row = self.tables.row
        pending = pending or {}
        for seq, p, n, samples, _ in entries:
            table = seq.block_table
            k = pending.get(seq)
            if k is not None and p <= len(seq.token_ids) - 1 < p + n:  # its last token: not sampled yet
                patch_at.append(end + len(seq.token_ids) - 1 - p)
                patch_from.append(k)
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
            ends.append(end)
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
        cu = h[o["cu"]:o["cu"] + B + 1]
        cu[0] = 0
        cu[1:n + 1] = ends
        layout = _Layout(T, B, B if pad_to is not None else len(sampling), len(new_index), len(patch_at))
        o = layout.offsets
        h[o["logits"]:o["logits"] + len(sampling)] = sampling
        if pad_to is not None:
            self._fill_padding(h, layout, n, end)
            h[o["logits"] + len(sampling):o["logits"] + B] = 0  # rows no entry samples: computed, never read
        if layout.D:
            h[o["new_index"]:o["new_index"] + layout.D] = new_index
            h[o["new_block"]:o["new_block"] + layout.D] = new_block
        if layout.P:
            h[o["patch_at"]:o["patch_at"] + layout.P] = patch_at
            h[o["patch_from"]:o["patch_from"] + layout.P] = patch_from
        return layout, len(sampling)

    def _fill_padding(self, h: np.ndarray, layout: _Layout, n: int, t: int) -> None:
        """A bucket's padding after n entries of t tokens: tokens ``t..T`` are token 0 at position 0 with no KV
        slot; sequences ``n..B`` have context 0 (attention reads nothing, writes zeros). Decode buckets (T == B):
        one padding token a sequence; mixed ones: all padding tokens in sequence n, none in the rest."""
        o, T, B = layout.offsets, layout.T, layout.B
        for name, value in (("ids", 0), ("pos", 0), ("slots", -1)):
            h[o[name] + t:o[name] + T] = value
        for name in ("seq_lens", "rows"):
            h[o[name] + n:o[name] + B] = 0
        cu = h[o["cu"]:o["cu"] + B + 1]
        if T == B:
            cu[n + 1:] = self._arange[t + 1:T + 1]
        else:
            cu[n + 1:] = T

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
