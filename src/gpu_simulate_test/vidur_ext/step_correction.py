"""What a bundle's meta tells Vidur 0.0.26's predictor besides its rows, applied at run time (``StepTerms``).

Vidur's step time is ``num_layers x`` the sum of its per-layer operators: nothing for the embedding, the final norm,
the LM head, sampling or the engine's host work (``specs/profiling_root.md``, "What Vidur's step leaves out"). A
bundle of the ``step`` variant carries those as one correction per step, fitted on its fit shapes only,

    correction_ms = c_iter_ms + c_token_ms * num_tokens_8 + c_first_ms * first_chunks

(``num_tokens_8``: the step's tokens rounded up to a multiple of 8; ``first_chunks``: the requests whose first prompt
chunk the step runs, each admitted by the engine in it; bundles from before that term lack it: 0), recorded as ``step_correction`` in
``profile_meta.json``; a bundle of the ``head`` variant carries instead the work outside the layers as measured
(``outside_layers``: by the step's requests) and, built since 2026-12-02, the host's share of a step on the pipelined
engine as measured (``host_term``: by the step's requests, for a step packed ahead and for one packed at its start),
and a native bundle says how its rows are keyed and fitted (``row_keys``). A native bundle of the ``step`` or ``head``
variant built since 2026-12-03 also carries what the engine's own decode step graphs cost beyond their parts
(``decode_graph``: by the graph's sequences, measured), which both variants add before anything else.
vidur-sim and the bundle's own checks apply them inside the predictor (``predictor._LocalProfileMixin``): Vidur
itself is never patched and the operator rows stay as measured. A step term enters through Vidur's ``add`` row, the
one per-layer term Vidur looks up for every step, divided by the layer count that Vidur multiplies it by again, so
the step comes out exactly ``operators + term``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import numpy as np

from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.io.outputs import PROFILE_META

META_KEY = "step_correction"  # profile_meta.json: the correction vidur-sim applies (absent or null: none)


@dataclass(frozen=True)
class StepCorrection:
    c_iter_ms: float
    c_token_ms: float
    c_first_ms: float = 0.0

    def ms(self, num_tokens_8: int, first_chunks: int = 0) -> float:
        """The correction of one step of ``num_tokens_8`` tokens (already rounded up to a multiple of 8) running
        ``first_chunks`` requests' first prompt chunks."""
        return self.c_iter_ms + self.c_token_ms * num_tokens_8 + self.c_first_ms * first_chunks

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def step_correction(meta: Mapping[str, Any], source: str = PROFILE_META) -> Optional[StepCorrection]:
    """The correction a bundle's meta carries, None when it carries none (every bundle but the ``step`` variant's)."""
    record = meta.get(META_KEY)
    if record is None:
        return None
    try:
        return StepCorrection(float(record["c_iter_ms"]), float(record["c_token_ms"]),
                              float(record.get("c_first_ms", 0.0)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{source}: {META_KEY!r} must hold numbers c_iter_ms, c_token_ms (and c_first_ms) ({exc}); "
                            "rebuild the bundle") from exc


OUTSIDE_KEY = "outside_layers"  # profile_meta.json: the head variant's measured term (absent or null: none)
GRAPH_KEY = "decode_graph"  # profile_meta.json: the decode graphs' cost beyond their parts (absent or null: none)
CHUNK_KEY = "chunk_graph"  # profile_meta.json: a prompt chunk's step graphs' cost beyond their parts (absent: none)
HOST_KEY = "host_term"  # profile_meta.json: the head variant's measured host share (absent or null: none)
IDLE_KEY = "idle_start"  # profile_meta.json: what a step that starts on an idle engine costs more (absent or null: none)
ROW_KEYS_KEY = "row_keys"  # profile_meta.json: how the bundle's rows are keyed (absent or null: as Vidur 0.0.26 reads)
ROW_KEYS = {"prefill_attention_kv": ("after_chunk", "before_chunk"), "token_rows": ("rounded_8", "exact", "graph_bucket"),
            "decode_batching": ("vidur_overhead", "as_measured"), "prefill_chunks": ("summed", "one_wave", "one_launch"),
            "token_fit": ("bootstrap", "every_row"), "prefill_attention_chunk": ("vidur_model", "between_measured"),
            "decode_attention_kv": ("rounded_up", "mean"), "decode_attention_batch": ("vidur_model", "between_measured"),
            "prefill_attention_kv_read": ("rounded_up", "between")}
ROW_COUNTS = ("prefill_wave_blocks", "prefill_block_q")  # the numbers of the one_wave reading (0: unused)
ROW_SIZES = ("graph_batch_sizes", "graph_token_sizes")  # the buckets of the graph_bucket reading (empty: unused)


@dataclass(frozen=True)
class RequestCurve:
    """A per-step time **measured** on the engine at a few request counts, interpolated linearly in the step's requests
    and held flat beyond the first and last point."""

    requests: tuple[int, ...]
    ms: tuple[float, ...]

    def at(self, num_requests: int) -> float:
        return float(np.interp(num_requests, self.requests, self.ms))

    def to_dict(self) -> dict[str, list]:
        return {"requests": list(self.requests), "ms": list(self.ms)}


@dataclass(frozen=True)
class OutsideLayers(RequestCurve):
    """The ``head`` variant's term: the step's work outside its layers (embedding, final norm, LM head, argmax, the
    decode work table), measured at the rows it samples."""

    def at_step(self, num_requests: int, graph: Optional[tuple[int, int]]) -> float:
        """The term of a step of ``num_requests``, run in ``graph`` (``RowKeys.graph``: its padding sequences sample
        rows too) or eagerly (None)."""
        return self.at(num_requests if graph is None else graph[1])


@dataclass(frozen=True)
class DecodeGraph(RequestCurve):
    """What the engine's step graph of a decode batch costs beyond its parts (the operators as the bundle reads them
    and the work outside the layers), **measured** on the host grid's decodes (``bundle.host_grid``: their device
    time less those parts, ``variants.decode_graph_term``). Signed: a graph may cost less than its parts. The engine's
    graph of 8 or 16 decodes runs its projections with gaps between the kernels that the profiler's own graphs of the
    layers do not have (~100 us on the H200: ``studies/2026-12-03-bucket8/``); no operator row can see that.

    By the step's decodes within its graph (``graphs``: the graph, its sequences, of each point): measured at every
    graph's fewest and most decodes, read linearly between the points of the step's own graph and never across two
    graphs, so that a graph's padding sequences (33 decodes run in the graph of 48: 15 of them) cost what they were
    measured to (``studies/2026-12-03-sawtooth/``). Bundles built before ``c33004bb54b8`` and ``11774aab0cd5``
    measured one point a graph, at its size, by the graph's sequences (no ``graphs``: each point is its own graph's)."""

    graphs: tuple[int, ...] = ()

    def at_step(self, graph: Optional[tuple[int, int]], decode_only: bool, num_decodes: int) -> float:
        """The term of a step of ``num_decodes`` run in ``graph`` (``RowKeys.graph``): 0 unless it is a decode batch a
        graph runs; a graph the term has no point of: read at the graph's sequences across the others."""
        if not decode_only or graph is None:
            return 0.0
        owners = self.graphs or self.requests
        points = [(n, t) for n, t, g in zip(self.requests, self.ms, owners) if g == graph[1]]
        if not points:
            return self.at(graph[1])
        return float(np.interp(num_decodes, [n for n, _ in points], [t for _, t in points]))

    def to_dict(self) -> dict[str, list]:
        return {**super().to_dict(), **({"graphs": list(self.graphs)} if self.graphs else {})}


@dataclass(frozen=True)
class ChunkGraph(RequestCurve):
    """What the engine's step graph of a batch with a prompt chunk costs beyond its parts (the operators as the bundle
    reads them and the work outside the layers), **measured** on the host grid's first chunks (``bundle.host_grid``:
    their device time less those parts, ``variants.chunk_graph_term``), by the step's requests. Signed: on the H200
    such a step of 1-12 requests ran 0.12-0.19 ms under its parts, one of 128 0.34-0.36 ms over, in three builds on three
    machines (``studies/2026-12-04-chunk-graph/``); the decode graph term covers the steps without a chunk.
    ``max_graph_tokens``: the largest token graph the grid's steps ran in; a step in a larger one (a long prompt
    under the vllm policy) gets nothing, the term not being measured there."""

    max_graph_tokens: int = 0

    def at_step(self, graph: Optional[tuple[int, int]], decode_only: bool, num_requests: int) -> float:
        """The term of a step of ``num_requests`` run in ``graph`` (``RowKeys.graph``): 0 unless it holds a prompt
        chunk and a graph no larger than the measured ones runs it (a step no graph holds has the eager term)."""
        if decode_only or graph is None or graph[0] > self.max_graph_tokens:
            return 0.0
        return self.at(num_requests)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "max_graph_tokens": self.max_graph_tokens}


@dataclass(frozen=True)
class IdleStart:
    """What a step that starts on an idle engine costs beyond the same step back to back, **measured** by the build
    (``bundle.idle_start_term``) on a lone prompt submitted a few gap lengths after the engine's last step ended: the
    engine thread's wake-up (from the request's dispatch to the step's start) plus the step's own wall, less that
    prompt's wall resubmitted at once (as the shape sets and the host grid time a lone prompt), by the idle gap before
    the step. Interpolated linearly in the gap from 0 at no gap, held flat beyond the longest gap measured. At 10% load
    on the H200 10-15% of the requests reached an idle engine: 0.4 ms of wake-up and a first step 0.15-0.58 ms slower
    than predicted (``studies/2026-12-04-campaign/idle_arrivals.txt``); Vidur's step has no term for either."""

    gap_ms: tuple[float, ...]
    ms: tuple[float, ...]

    def at(self, gap_ms: float) -> float:
        """The term of a step that starts ``gap_ms`` after the replica's previous step ended (0: back to back)."""
        if gap_ms <= 0:
            return 0.0
        return float(np.interp(gap_ms, (0.0, *self.gap_ms), (0.0, *self.ms)))

    def to_dict(self) -> dict[str, list]:
        return {"gap_ms": list(self.gap_ms), "ms": list(self.ms)}


@dataclass(frozen=True)
class TokenCurve:
    """A per-step time **measured** on the engine at a few token counts, interpolated linearly in the step's tokens
    and held flat beyond the first and last point."""

    tokens: tuple[int, ...]
    ms: tuple[float, ...]

    def at(self, num_tokens: int) -> float:
        return float(np.interp(num_tokens, self.tokens, self.ms))

    def to_dict(self) -> dict[str, list]:
        return {"tokens": list(self.tokens), "ms": list(self.ms)}


@dataclass(frozen=True)
class HostTerm:
    """The ``head`` variant's second term (bundles built since 2026-12-02): what the host adds to a step of the
    pipelined native engine, its wall time less the device's (``specs/profiling_root.md``, "The host's share of a
    step"), measured on a request grid of its own (``profiler.bundle.host_grid``).

    - ``ahead``: a step packed while the step before it ran (the engine's common case): the hand-over between two
      steps, the device idle from one step's end to the next launch.
    - ``serial``: a step packed at its own start, because its batch admits a request that arrived while the step before
      it ran (the engine packs the step again) or the engine was idle: the scheduling and packing too.

    - ``eager`` (bundles built since 2026-12-03, where the engine has CUDA graphs and a step may hold more tokens than
      its largest graph): what a step no graph holds costs beyond the operators, the work outside the layers and the
      host's share above, by its tokens. The engine then launches every kernel from Python, and the step is bound by
      that, not by the device (a 1,024-token prefill: ~13-21 ms against ~3 ms of kernels on the H200); the
      operators, timed as the graphs run them, cannot see it.

    A step is ``serial`` in vidur-sim when its batch holds a request that arrived after the replica's previous batch
    was scheduled (every first batch of a replica too): the moment the engine packs a step ahead."""

    ahead: RequestCurve
    serial: RequestCurve
    eager: Optional[TokenCurve] = None

    def at(self, num_requests: int, serial: bool) -> float:
        return (self.serial if serial else self.ahead).at(num_requests)

    def eager_at(self, num_tokens: int, graph: Optional[tuple[int, int]]) -> float:
        """The eager term of a step of ``num_tokens`` run in ``graph`` (``RowKeys.graph``; None: no graph holds it):
        0 for a step a graph runs, or for a bundle without the term."""
        return 0.0 if self.eager is None or graph is not None else self.eager.at(num_tokens)

    def to_dict(self) -> dict[str, dict[str, list]]:
        out = {"ahead": self.ahead.to_dict(), "serial": self.serial.to_dict()}
        return out if self.eager is None else {**out, "eager": self.eager.to_dict()}


@dataclass(frozen=True)
class RowKeys:
    """The keys a bundle's rows are measured at, where they differ from what Vidur 0.0.26 looks up:

    - ``prefill_attention_kv``: Vidur's predictor looks a chunk's attention up at the KV *after* the chunk, while its
      own profiler (and this project's) measures each row with the KV cached *before* it; ``before_chunk`` looks
      the rows up where they were measured.
    - ``token_rows``: Vidur looks every token row up at the step's tokens rounded up to 8; ``exact`` at the step's
      own count (a bundle with rows below 8: the native engine runs a one-row path for a lone decode);
      ``graph_bucket`` at the tokens of the CUDA graph the engine replays the step in (``graph_batch_sizes``,
      ``graph_token_sizes``: its buckets, the step padded up to the smallest that holds it; the exact count for a
      step no graph holds, which runs eagerly), and the work outside the layers at that graph's sequences.
    - ``decode_batching``: Vidur multiplies a batched decode's attention row (read at the batch's mean KV) by
      ``1 + attention_decode_batching_overhead_fraction`` for what ragged KV lengths cost its kernels;
      ``as_measured`` reads the row alone (an engine whose split-KV decode balances ragged batches, so that a batch
      costs what its total KV does).
    - ``prefill_chunks``: Vidur adds one prefill attention row per prompt chunk of a step; ``one_wave`` reads a step
      whose chunks' query blocks (``ceil(chunk / prefill_block_q)`` each) fit one wave of the engine's launch
      (``prefill_wave_blocks`` a KV head: its SMs over its KV heads, one program an SM) as its longest chunk's row,
      the chunks running side by side in one launch; a bigger step is summed as Vidur does; ``one_launch`` reads one
      wave as ``one_wave`` does and a bigger step as the summed rows less one launch's fixed cost (the row of 32 tokens
      at KV 0) for every chunk after the first: each row holds a launch's fixed cost, which the engine pays once a
      step (``studies/2026-12-03-untimed-rebuild/prompts_per_step-vllm.txt``).
    - ``token_fit``: Vidur fits each token operator (one row per token count) with a random forest whose trees each
      see a bootstrap sample of the rows, which averages a row with its neighbours where a tree missed it;
      ``every_row`` lets every tree see every row (``bootstrap=False``, token operators only), so the forest returns
      each measured row exactly where it is read (``studies/2026-12-03-forest/``). It changes the trained models, so
      it enters the predictor's cache key.
    - ``decode_attention_kv``: Vidur reads a decode batch's attention row at its mean KV rounded up to its KV
      granularity (256), ~128 tokens a request more than the batch holds on average; ``mean`` reads it at the mean
      KV itself, linearly between the rows on either side (``studies/2026-12-03-bucket8/decode_kv_lookup.py``).
    - ``decode_attention_batch``: Vidur predicts a decode batch's attention at every batch size from its model of the
      rows, measured at a ladder of batch sizes (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128); its random forest
      answers a size between two rungs with one of them, so 33-40 decodes read the 32-decode row and 41-48 the 48's (a
      sawtooth: -9 to -16% then +5%, on the H200 campaign); ``between_measured`` reads every batch size linearly
      between the model's predictions at the two measured sizes on either side (beyond the ladder: the model's).
    - ``prefill_attention_chunk``: Vidur predicts a chunk's prefill attention from its model of the rows, measured at a
      ladder of chunk sizes (..., 512, 768, 1024, 1536, 2048, 3072, 4096); its random forest answers a chunk between
      two rungs with one of them (a lone prompt's sawtooth: -9 to +7% on the H200 campaign's vllm setup);
      ``between_measured`` reads every chunk linearly between the model's predictions at the two measured sizes on
      either side, at its KV (beyond the ladder: the model's).
    - ``prefill_attention_kv_read``: Vidur reads a chunk's attention row at its KV rounded up to its KV granularity
      (256), up to 255 tokens more than the chunk attends to (a chunk after a prefix of 300 reads the row at 512);
      ``between`` reads it at the KV itself, linearly between the predictions at the granularity points on either
      side (the KV is the one ``prefill_attention_kv`` names).

    Apart from ``token_fit`` the rows and Vidur's trained models stay as they are; only the key of a lookup
    changes."""

    prefill_attention_kv: str = "after_chunk"
    token_rows: str = "rounded_8"
    decode_batching: str = "vidur_overhead"
    prefill_chunks: str = "summed"
    prefill_wave_blocks: int = 0
    prefill_block_q: int = 0
    graph_batch_sizes: tuple[int, ...] = ()
    graph_token_sizes: tuple[int, ...] = ()
    token_fit: str = "bootstrap"
    decode_attention_kv: str = "rounded_up"
    decode_attention_batch: str = "vidur_model"
    prefill_attention_chunk: str = "vidur_model"
    prefill_attention_kv_read: str = "rounded_up"

    def graph(self, num_tokens: int, num_seqs: int, decode_only: bool) -> Optional[tuple[int, int]]:
        """The ``(tokens, sequences)`` of the graph the engine replays a step in (``graph_bucket``), or None."""
        if self.token_rows != "graph_bucket" or not self.graph_batch_sizes:
            return None
        from gpu_simulate_test.engine.runner import pick_graph_shape  # the engine's own rule (imports torch)

        return pick_graph_shape(num_tokens, num_seqs, decode_only, list(self.graph_batch_sizes),
                                list(self.graph_token_sizes))

    def one_wave(self, chunks: list[int]) -> bool:
        """Whether a step's prompt chunks run side by side in one wave (``prefill_chunks: one_wave`` or
        ``one_launch``)."""
        if self.prefill_chunks not in ("one_wave", "one_launch") or self.prefill_wave_blocks < 1 or self.prefill_block_q < 1:
            return False
        return sum(-(-int(c) // self.prefill_block_q) for c in chunks) <= self.prefill_wave_blocks

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class StepTerms:
    """Everything a bundle's meta tells vidur-sim's predictor besides its rows: the whole-step correction (``step``
    variant), the measured work outside the layers and the host's share of a step (``head`` variant), the decode
    graphs' and the prompt chunks' step graphs' cost beyond their parts (either), what a step that starts on an idle
    engine costs more, and the rows' keys."""

    correction: Optional[StepCorrection] = None
    outside: Optional[OutsideLayers] = None
    keys: RowKeys = RowKeys()
    host: Optional[HostTerm] = None
    graph: Optional[DecodeGraph] = None
    chunk: Optional[ChunkGraph] = None
    idle: Optional[IdleStart] = None

    def record(self) -> dict[str, Any]:
        """What a run's meta records of them (null: none)."""
        return {META_KEY: None if self.correction is None else self.correction.to_dict(),
                OUTSIDE_KEY: None if self.outside is None else self.outside.to_dict(),
                HOST_KEY: None if self.host is None else self.host.to_dict(),
                GRAPH_KEY: None if self.graph is None else self.graph.to_dict(),
                CHUNK_KEY: None if self.chunk is None else self.chunk.to_dict(),
                IDLE_KEY: None if self.idle is None else self.idle.to_dict(), ROW_KEYS_KEY: self.keys.to_dict()}


def _points(record: Any, key: str, source: str, by: str = "requests", signed: bool = False
            ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A measured per-step time by requests (or ``by`` tokens), checked: counts strictly increasing from 1, times
    finite and (unless ``signed``) non-negative; the counts and the times, for the curve of its kind."""
    try:
        counts = tuple(int(n) for n in record[by])
        ms = tuple(float(t) for t in record["ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: {key!r} must hold lists {by} and ms ({exc}); rebuild the bundle") from exc
    if not counts or len(counts) != len(ms) or counts[0] < 1 or any(b <= a for a, b in zip(counts, counts[1:])) \
            or not all(np.isfinite(t) and (signed or t >= 0) for t in ms):
        raise ArtifactError(f"{source}: {key!r} needs {by} counts increasing from >= 1 and one "
                            f"{'finite' if signed else 'non-negative'} time each; got {list(counts)} / {list(ms)}; "
                            "rebuild the bundle")
    return counts, ms


def outside_layers(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> Optional[OutsideLayers]:
    """The ``outside_layers`` record checked (``_points``)."""
    if record is None:
        return None
    return OutsideLayers(*_points(record, OUTSIDE_KEY, source))


def decode_graph(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> Optional[DecodeGraph]:
    """The ``decode_graph`` record checked (``_points``, signed; ``graphs``, where it has them: one a point, each
    holding at least its point's decodes)."""
    if record is None:
        return None
    counts, ms = _points(record, GRAPH_KEY, source, signed=True)
    try:
        graphs = tuple(int(g) for g in record.get("graphs", ()))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: {GRAPH_KEY!r}.graphs must be a list of graph sizes ({exc}); rebuild the bundle") from exc
    if graphs and (len(graphs) != len(counts) or any(g < n for n, g in zip(counts, graphs))):
        raise ArtifactError(f"{source}: {GRAPH_KEY!r}.graphs needs one graph a point, each of at least its decodes; "
                            f"got {list(graphs)} for {list(counts)}; rebuild the bundle")
    return DecodeGraph(counts, ms, graphs)


def chunk_graph(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> Optional[ChunkGraph]:
    """The ``chunk_graph`` record checked (``_points``, signed; ``max_graph_tokens`` a token count >= 1)."""
    if record is None:
        return None
    largest = record.get("max_graph_tokens") if isinstance(record, Mapping) else None
    if not isinstance(largest, int) or isinstance(largest, bool) or largest < 1:
        raise ArtifactError(f"{source}: {CHUNK_KEY!r}.max_graph_tokens must be the largest token graph measured (>= 1); "
                            f"got {largest!r}; rebuild the bundle")
    return ChunkGraph(*_points(record, CHUNK_KEY, source, signed=True), max_graph_tokens=largest)


def idle_start(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> Optional[IdleStart]:
    """The ``idle_start`` record checked: gaps (ms) strictly increasing above 0, one finite time each (signed: a
    quiet host may wake as fast as it resubmits)."""
    if record is None:
        return None
    try:
        gaps = tuple(float(g) for g in record["gap_ms"])
        ms = tuple(float(t) for t in record["ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: {IDLE_KEY!r} must hold lists gap_ms and ms ({exc}); rebuild the bundle") from exc
    if not gaps or len(gaps) != len(ms) or gaps[0] <= 0 or any(b <= a for a, b in zip(gaps, gaps[1:])) \
            or not all(np.isfinite(x) for x in (*gaps, *ms)):
        raise ArtifactError(f"{source}: {IDLE_KEY!r} needs gaps increasing from > 0 ms and one finite time each; got "
                            f"{list(gaps)} / {list(ms)}; rebuild the bundle")
    return IdleStart(gaps, ms)


def host_term(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> Optional[HostTerm]:
    """The ``host_term`` record checked: an ``ahead`` and a ``serial`` curve (``_points``), and an ``eager`` one by
    tokens where the bundle measured it."""
    if record is None:
        return None
    if not isinstance(record, Mapping) or not {"ahead", "serial"} <= set(record) <= {"ahead", "serial", "eager"}:
        raise ArtifactError(f"{source}: {HOST_KEY!r} must map 'ahead' and 'serial' to a curve each (and 'eager' to "
                            f"one by tokens); got {record!r}")
    eager = record.get("eager")
    return HostTerm(RequestCurve(*_points(record["ahead"], f"{HOST_KEY}.ahead", source)),
                    RequestCurve(*_points(record["serial"], f"{HOST_KEY}.serial", source)),
                    None if eager is None else TokenCurve(*_points(eager, f"{HOST_KEY}.eager", source, "tokens")))


def row_keys(record: Optional[Mapping[str, Any]], source: str = PROFILE_META) -> RowKeys:
    if record is None:
        return RowKeys()
    if not isinstance(record, Mapping) or set(record) - set(ROW_KEYS) - set(ROW_COUNTS) - set(ROW_SIZES):
        raise ArtifactError(f"{source}: {ROW_KEYS_KEY!r} must map some of {sorted([*ROW_KEYS, *ROW_COUNTS, *ROW_SIZES])} "
                            f"to a value; got {record!r}")
    fields = dict(record)
    for name, value in record.items():
        if name in ROW_SIZES:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                               for v in value) or list(value) != sorted(set(value)):
                raise ArtifactError(f"{source}: {ROW_KEYS_KEY}.{name}={value!r} must list increasing sizes >= 1")
            fields[name] = tuple(value)
        elif name in ROW_COUNTS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ArtifactError(f"{source}: {ROW_KEYS_KEY}.{name}={value!r} must be a count >= 0")
        elif value not in ROW_KEYS[name]:
            raise ArtifactError(f"{source}: {ROW_KEYS_KEY}.{name}={value!r} is not one of {list(ROW_KEYS[name])}")
    keys = RowKeys(**fields)
    if keys.prefill_chunks != "summed" and (keys.prefill_wave_blocks < 1 or keys.prefill_block_q < 1):
        raise ArtifactError(f"{source}: {ROW_KEYS_KEY}.prefill_chunks={keys.prefill_chunks} needs prefill_wave_blocks and "
                            "prefill_block_q >= 1; rebuild the bundle")
    if keys.token_rows == "graph_bucket" and not (keys.graph_batch_sizes and keys.graph_token_sizes):
        raise ArtifactError(f"{source}: {ROW_KEYS_KEY}.token_rows=graph_bucket needs graph_batch_sizes and "
                            "graph_token_sizes; rebuild the bundle")
    return keys


def step_terms(meta: Mapping[str, Any], source: str = PROFILE_META) -> StepTerms:
    """The step terms a bundle's meta carries (a bundle from before any of them: none, Vidur's own keys)."""
    terms = StepTerms(step_correction(meta, source), outside_layers(meta.get(OUTSIDE_KEY), source),
                      row_keys(meta.get(ROW_KEYS_KEY), source), host_term(meta.get(HOST_KEY), source),
                      decode_graph(meta.get(GRAPH_KEY), source), chunk_graph(meta.get(CHUNK_KEY), source),
                      idle_start(meta.get(IDLE_KEY), source))
    for key, term in ((GRAPH_KEY, terms.graph), (CHUNK_KEY, terms.chunk)):
        if term is not None and terms.keys.token_rows != "graph_bucket":
            raise ArtifactError(f"{source}: {key} is a cost of the engine's step graphs, but {ROW_KEYS_KEY} names no "
                                "graph buckets (token_rows: graph_bucket); rebuild the bundle")
    if terms.host is not None and terms.host.eager is not None and terms.keys.token_rows != "graph_bucket":
        raise ArtifactError(f"{source}: {HOST_KEY}.eager is the cost of a step no CUDA graph holds, but {ROW_KEYS_KEY} "
                            "names no graph buckets (token_rows: graph_bucket); rebuild the bundle")
    return terms
