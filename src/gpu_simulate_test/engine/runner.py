"""The model runner: one ``ScheduledBatch`` in, its sampled tokens out, with as little host work as the step allows.

A step is packed (``prepare``), launched (``launch``) and waited for (``wait``) in three calls, so that the engine can
pack step n+1 while step n runs on the GPU. Packing writes its int32 inputs (token ids, positions, KV slots, context
lengths, block-table rows, ``cu_seqlens_q``, the rows that sample, the block-table entries added since the last step,
and where the token ids that step n is still sampling go), each at one fixed place sized for the largest step
(``_Segments``), into one of two pinned host buffers, and queues one copy of them on the stream behind step n. The
step itself, inside its graph, first writes its new block-table entries and patches in the tokens step n sampled
(``_forward``), so at n's end only the launch is left. Block tables live on the device (one row per running
sequence) and only the new blocks a step reaches travel.

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
        # one row more than the sequences: the step's unused upload slots write there (``scratch``), never read
        self.table = torch.zeros(num_rows + 1, width, dtype=torch.int32, device=device)
        self.flat = self.table.view(-1)
        self.scratch = num_rows * width
        self._free = list(range(num_rows - 1, -1, -1))
        self._state: dict[Sequence, list[int]] = {}  # seq -> [row, num_restarts seen, blocks uploaded]
        self._journal: list[tuple[str, Sequence, Optional[list[int]]]] = []

    def row(self, seq: Sequence, upto: int, new_index: list[int], new_block: list[int]) -> int:
        """The sequence's row; appends the flat table index and block id of each of its first ``upto`` blocks (those
        its step reaches) not uploaded yet. A policy may allocate a whole prompt's blocks at once; uploading only
        what a step reads bounds a step's uploads by its tokens and entries (``ModelRunner._max_uploads``)."""
        st = self._state.get(seq)
        if st is not None and st[2] >= upto and st[1] == seq.num_restarts:  # the common case: no news
            return st[0]
        blocks = seq.block_table[:upto]
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
            raise RuntimeError(f"more than {self.table.shape[0] - 1} sequences hold KV blocks at once")
        return self._free.pop()


_ALIGN = 16  # int32 elements: each input starts 64-byte aligned, as Triton specialises pointers on alignment


class _Segments:
    """Where each input sits in the packed int32 buffer: the same place for every step of a runner, each segment
    sized for its largest step (``max_tokens`` tokens, ``max_seqs`` entries and sampling rows, ``max_uploads``
    block-table entries). So a graph captured once reads every later step's inputs where they are, and a step packed
    ahead can be extended in place when a revision admits more entries after its own (``ModelRunner.prepare``).

    Every segment starts aligned: a Triton kernel compiled for an aligned pointer must never meet an unaligned one
    mid-run (that would compile a second variant inside a measured step). The token segments come last, so that one
    copy of the buffer's head holds a step of T tokens whatever its other lengths. The ids have one place more,
    ``patch_scratch``, where a bucket's unused token patches write (never read)."""

    def __init__(self, max_tokens: int, max_seqs: int, max_uploads: int) -> None:
        self.patch_scratch = max_tokens
        sizes = (("seq_lens", max_seqs), ("rows", max_seqs), ("cu", max_seqs + 1), ("logits", max_seqs),
                 ("new_index", max_uploads), ("new_block", max_uploads), ("patch_at", max_seqs),
                 ("patch_from", max_seqs), ("ids", max_tokens + 1), ("pos", max_tokens), ("slots", max_tokens))
        self.offset: dict[str, int] = {}
        o = 0
        for name, n in sizes:
            self.offset[name] = o
            o += -(-n // _ALIGN) * _ALIGN
        self.end = o


class _Layout(NamedTuple):
    """The lengths of one step's inputs: T tokens, B entries, S sampling rows, D new block-table entries, P token ids
    of the step before it that are written in on the device (where among the ids; which of its sampled tokens)."""

    T: int
    B: int
    S: int
    D: int
    P: int


_LENGTH = {"ids": 0, "pos": 0, "slots": 0, "seq_lens": 1, "rows": 1, "cu": 1, "logits": 2, "new_index": 3,
           "new_block": 3, "patch_at": 4, "patch_from": 4}  # the _Layout field each segment's length is (cu: B + 1)


class _Filled(NamedTuple):
    """How far a packing filled each segment with real entries (its padding comes after): where an extension of
    the same step goes on."""

    t: int  # tokens
    n: int  # entries
    s: int  # sampling rows
    d: int  # block-table uploads
    p: int  # token ids patched in on the device


_NOTHING = _Filled(0, 0, 0, 0, 0)


class PackedStep(NamedTuple):
    """A step whose inputs are queued for the device: their layout, its sampling entries, the graph bucket that
    runs it (None: eager), and what an extension needs: the entries packed, the host buffer, how far it is filled."""

    layout: _Layout
    num_sampled: int
    graph_shape: Optional[tuple[int, int]]
    entries: tuple[BatchEntry, ...]
    turn: int
    filled: _Filled


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
        # B up to one over the cap: a mixed bucket's padding sequence (``mixed_seq_sizes``); a step uploads at most
        # one block per entry more than its tokens fill (``_BlockTables.row`` uploads what the step reaches)
        self._seg = _Segments(self.max_tokens, self.max_seqs + 1, self._max_uploads(self.max_tokens, self.max_seqs + 1))
        # two host buffers: a step is packed into one while the copy of the step before may still read the other;
        # each one's event marks its last copy done (a step packed again after a revision may come round early)
        self._hosts = [torch.empty(self._seg.end, dtype=torch.int32, pin_memory=cuda) for _ in range(2)]
        self._hosts_np = [h.numpy() for h in self._hosts]
        self._copied = [torch.cuda.Event() for _ in range(2)] if cuda else None
        self._turn = 0
        self._dev = torch.zeros(self._seg.end, dtype=torch.int32, device=self.device)
        # where the step's patches write: the ids with their scratch place (not the whole buffer: the patches'
        # own positions are read from it, and index_put_ refuses a target that overlaps its indices)
        o = self._seg.offset["ids"]
        self._patch_target = self._dev[o:o + self._seg.patch_scratch + 1]
        # every step's sampled tokens, where the next step's patches read them and the host copies them from
        self._sampled = torch.zeros(self.max_seqs + 1, dtype=torch.int64, device=self.device)
        self._tokens_host = torch.empty(self.max_seqs + 1, dtype=torch.int64, pin_memory=cuda)
        self._num_sampled = 0  # of the step launched last
        self._done = torch.cuda.Event() if cuda else None
        self._copies: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # (turn, T): host, device spans
        self._returns: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # n: sampled tokens on device, on host
        self._arange = np.arange(shape.max_position_embeddings + 1, dtype=np.int32)  # positions, cu_seqlens
        self._in_block = self._arange % np.int32(config.block_size)  # a position's offset in its block
        self.graph_sizes = sorted({b for b in config.cuda_graph_batch_sizes
                                   if 0 < b <= min(self.max_seqs, self.max_tokens)}) if cuda else []
        self.graph_token_sizes = sorted({t for t in config.cuda_graph_token_sizes
                                         if 1 < t <= self.max_tokens}) if self.graph_sizes else []
        self.graphs: dict[tuple[int, int], "torch.cuda.CUDAGraph"] = {}
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
                self._forward(layout)
            pool = graph.pool() if pool is None else pool
            self.graphs[shape] = graph
            self.num_captures += 1
        for shape, graph in self.graphs.items():
            self._load_padding(*shape)
            graph.replay()
        torch.cuda.synchronize()

    def _max_uploads(self, num_tokens: int, num_seqs: int) -> int:
        """The most block-table entries a step of ``num_tokens`` tokens in ``num_seqs`` entries uploads: an entry of
        n tokens reaches at most ceil(n / block_size) blocks past those its sequence's steps before reached."""
        return num_tokens // self.config.block_size + num_seqs

    def _load_padding(self, num_tokens: int, num_seqs: int) -> _Layout:
        """A bucket's inputs with no real entry (all padding), on the device: what capture and profiling run."""
        layout = self._fill(self._hosts_np[0], (), num_tokens, num_seqs, None, _NOTHING)[0]
        host, dev = self._copy_spans(0, layout.T)
        dev.copy_(host)
        return layout

    def _view(self, layout: _Layout, name: str) -> torch.Tensor:
        """The device's segment ``name`` of a step at ``layout``."""
        o = self._seg.offset[name]
        return self._dev[o:o + layout[_LENGTH[name]] + (name == "cu")]

    def _forward(self, layout: _Layout) -> torch.Tensor:
        """The greedy tokens (``_sampled[:S]``) of a step whose inputs are on the device at ``layout``: first its
        block-table uploads and the token ids of the step before it (the sampled tokens its inputs were packed
        without), then the model. Both are part of the step, inside its graph: no launch of their own on the host."""
        v = functools.partial(self._view, layout)
        if layout.D:
            self.tables.flat.index_put_((v("new_index"),), v("new_block"))
        if layout.P:
            self._patch_target.index_put_((v("patch_at"),),
                                          self._sampled.index_select(0, v("patch_from")).to(torch.int32))
        tables = self.tables.table.index_select(0, v("rows"))
        attn = AttentionInputs(v("slots"), v("cu"), v("seq_lens"), tables)
        logits = self.model.forward(v("ids"), v("pos"), attn, self.kv_cache, v("logits"))
        return torch.argmax(logits, dim=-1, out=self._sampled[:layout.S])

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
                pad_to: Optional[tuple[int, int]] = None, revises: Optional[PackedStep] = None) -> PackedStep:
        """Pack a step's inputs and queue their one copy to the device behind the step in flight (stream order: it
        lands once that step has ended). ``pending``: the sequences whose next input that step is still sampling, by
        their index among its sampled tokens (the step itself writes them in, ``_forward``). ``revises``: the step
        packed ahead that this batch replaces (a revision at the decision): where the batch only adds entries after
        its own, the packing goes on from where it stopped, in its buffer (the work of a step admitting a request
        that arrived while the one before ran: on the device's critical path); otherwise it is rolled back."""
        shape = self.graph_shape(batch) if allow_graph and pad_to is None else None
        pad = shape or pad_to
        if revises is not None and batch.entries[:len(revises.entries)] == revises.entries:
            turn, at, entries = revises.turn, revises.filled, batch.entries[len(revises.entries):]
        else:
            if revises is not None:
                self.discard(revises)
            self.tables.commit()  # from here on, what packing changes can be rolled back (discard)
            self._turn ^= 1
            turn, at, entries = self._turn, _NOTHING, batch.entries
        if self._copied is not None:
            self._copied[turn].synchronize()  # its last copy: long done, or the one right behind the step just ended
        layout, filled = self._fill(self._hosts_np[turn], entries, batch.num_tokens if pad is None else pad[0],
                                    None if pad is None else pad[1], pending, at)
        host, dev = self._copy_spans(turn, layout.T)
        dev.copy_(host, non_blocking=True)
        if self._copied is not None:
            self._copied[turn].record()
        return PackedStep(layout, filled.s, shape, batch.entries, turn, filled)

    def _copy_spans(self, turn: int, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The host buffer's head that holds a step of ``num_tokens`` tokens, and where it goes on the device (the
        views made once a bucket)."""
        spans = self._copies.get((turn, num_tokens))
        if spans is None:
            end = self._seg.offset["slots"] + num_tokens
            spans = self._copies[(turn, num_tokens)] = (self._hosts[turn][:end], self._dev[:end])
        return spans

    def discard(self, packed: PackedStep) -> None:
        """Forget a packed step that will not be launched (its batch was revised): the block-table rows it took and
        the uploads it planned go back to how they were on the host. What it queued for the device is overwritten
        by the next packing before any launch reads it."""
        self.tables.rollback()

    def launch(self, packed: PackedStep) -> None:
        """Start the step packed last on the device (asynchronously on a GPU); ``wait`` returns its tokens."""
        self.last_graph_shape = packed.graph_shape
        if packed.graph_shape is None:
            with torch.inference_mode():
                self._forward(packed.layout)
        else:
            self.graphs[packed.graph_shape].replay()
        n = self._num_sampled = packed.num_sampled
        dev, host = self._returns.get(n) or self._returns.setdefault(n, (self._sampled[:n], self._tokens_host[:n]))
        host.copy_(dev, non_blocking=True)
        if self._done is not None:
            self._done.record()

    def wait(self) -> list[int]:
        """The sampled tokens of the step launched last, once it has ended (on a GPU, the step's one sync)."""
        if self._done is not None:
            self._done.synchronize()
        return self._returns[self._num_sampled][1].tolist()

    def release(self, seq: Sequence) -> None:
        """Forget a finished sequence (its block-table row returns to the free rows)."""
        self.tables.release(seq)

    def _fill(self, h: np.ndarray, entries: tuple[BatchEntry, ...], num_tokens: int, pad_to: Optional[int],
              pending: Optional[dict[Sequence, int]], at: _Filled) -> tuple[_Layout, _Filled]:
        """Write ``entries`` into the host buffer ``h`` after the ``at`` already there: the step's layout and how far
        it is filled. A pending token (a placeholder in ``token_ids``) gets a ``patch_at`` (its place in the device
        ids) and a ``patch_from`` (its index among the step in flight's sampled tokens). ``pad_to``: a graph
        bucket's B, ``num_tokens`` its T (the padding: the module's docstring)."""
        bs = self.config.block_size
        o = self._seg.offset
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
        end = at.t
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
                # the prompt as an array (made when the request was added); tokens generated since, from the list
                ids = seq.prompt_array if p + n <= len(seq.prompt_array) else seq.token_ids
                h[o_ids + end:o_ids + end + n] = ids[p:p + n]
                h[o_pos + end:o_pos + end + n] = self._arange[p:p + n]
                first = p // bs
                blocks = np.repeat(np.array(table[first:(p + n - 1) // bs + 1], dtype=np.int32) * np.int32(bs), bs)
                np.add(blocks[p - first * bs:p - first * bs + n], self._in_block[p:p + n],
                       out=h[o_slot + end:o_slot + end + n])
            end += n
            ends.append(end)
            seq_lens.append(p + n)
            rows.append(row(seq, (p + n + bs - 1) // bs, new_index, new_block))
            if samples:
                sampling.append(end - 1)
        if len(dec_at) == end - at.t:  # decodes only: the entries are the tokens, in order
            h[o_ids + at.t:o_ids + end], h[o_pos + at.t:o_pos + end], h[o_slot + at.t:o_slot + end] = \
                dec_ids, dec_pos, dec_slot
        elif dec_at:
            i = np.asarray(dec_at)
            h[o_ids + i], h[o_pos + i], h[o_slot + i] = dec_ids, dec_pos, dec_slot
        filled = _Filled(end, at.n + len(entries), at.s + len(sampling), at.d + len(new_index), at.p + len(patch_at))
        h[o["seq_lens"] + at.n:o["seq_lens"] + filled.n] = seq_lens
        h[o["rows"] + at.n:o["rows"] + filled.n] = rows
        h[o["cu"]] = 0
        h[o["cu"] + at.n + 1:o["cu"] + filled.n + 1] = ends
        if sampling:  # the rest are often empty: a numpy write costs ~1 us even then
            h[o["logits"] + at.s:o["logits"] + filled.s] = sampling
        if new_index:
            h[o["new_index"] + at.d:o["new_index"] + filled.d] = new_index
            h[o["new_block"] + at.d:o["new_block"] + filled.d] = new_block
        if patch_at:
            h[o["patch_at"] + at.p:o["patch_at"] + filled.p] = patch_at
            h[o["patch_from"] + at.p:o["patch_from"] + filled.p] = patch_from
        if pad_to is None:
            return _Layout(end, filled.n, filled.s, filled.d, filled.p), filled
        T, B = num_tokens, pad_to
        n, t = filled.n, filled.t
        if n > B or t > T or (t < T and n == B) or (T != B and B >= T):
            raise RuntimeError(f"a batch of {n} entries and {t} tokens does not fit the graph bucket ({T}, {B})")
        layout = _Layout(T, B, B, self._max_uploads(T, B), B)
        if filled.d > layout.D:
            raise RuntimeError(f"a step of {t} tokens in {n} entries uploads {filled.d} block-table entries, more than "
                               f"its bucket's {layout.D}: a sequence skipped blocks it reached before")
        self._fill_padding(h, layout, filled)
        return layout, filled

    def _fill_padding(self, h: np.ndarray, layout: _Layout, filled: _Filled) -> None:
        """A bucket's padding after its real entries: tokens ``t..T`` are token 0 at position 0 with no KV slot;
        sequences ``n..B`` have context 0 (attention reads nothing, writes zeros); decode buckets (T == B) hold one
        padding token a sequence, mixed ones all padding tokens in sequence n, none in the rest. Logits rows past
        the sampling ones read row 0 (computed, never read); unused uploads and patches write scratch places."""
        o, (T, B, _, D, _) = self._seg.offset, layout
        t, n, s, d, p = filled
        for name, value in (("ids", 0), ("pos", 0), ("slots", -1)):
            h[o[name] + t:o[name] + T] = value
        for name in ("seq_lens", "rows"):
            h[o[name] + n:o[name] + B] = 0
        cu = h[o["cu"]:o["cu"] + B + 1]
        if T == B:
            cu[n + 1:] = self._arange[t + 1:T + 1]
        else:
            cu[n + 1:] = T
        h[o["logits"] + s:o["logits"] + B] = 0
        h[o["new_index"] + d:o["new_index"] + D] = self.tables.scratch
        h[o["new_block"] + d:o["new_block"] + D] = 0
        h[o["patch_at"] + p:o["patch_at"] + B] = self._seg.patch_scratch
        h[o["patch_from"] + p:o["patch_from"] + B] = 0

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
