"""Build a profiling root end to end: operators, whole iterations, the variants fitted on the fit shapes and chosen on
the validation shapes, the test check against two baselines, the verdict, atomic write."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
from rich.progress import Progress

from gpu_simulate_test.backends import Backend, get_backend
from gpu_simulate_test.backends.recorder import Recorder, RunClock
from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.device.busy import BusyProbe
from gpu_simulate_test.device.identity import device_key, measured_gpu
from gpu_simulate_test.device.lock import device_lock
from gpu_simulate_test.engine import id_basis
from gpu_simulate_test.errors import GstError, InputError
from gpu_simulate_test.io.ids import canonical_json, short_hash, without_defaults
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import PROFILE_META, atomic_dir
from gpu_simulate_test.io.schemas import (
    ATTENTION_PROFILE,
    ATTENTION_RAW_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    MLP_RAW_PROFILE,
    VALIDATION_CHECK,
)
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.vidur_ext import profiling_root as pr
from gpu_simulate_test.vidur_ext.profiler.baselines import baseline_record, baseline_table, fit_baselines
from gpu_simulate_test.vidur_ext.profiler.fold import fit_overhead, fold
from gpu_simulate_test.vidur_ext.profiler.grid import Grid, build_grid, ladder
from gpu_simulate_test.vidur_ext.profiler.host_share import stepping, untimed
from gpu_simulate_test.vidur_ext.profiler.iterations import STEP_TIMING, ShapeSamples, StepTimer
from gpu_simulate_test.vidur_ext.profiler.operators import (
    OPERATOR_TIMING,
    LayerOps,
    OperatorSource,
    time_attention,
    time_outside_layers,
    time_token_ops,
)
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, stats_ms, trimmed_mean
from gpu_simulate_test.vidur_ext.profiler.variants import (
    Candidate,
    check_variants,
    choose,
    chunk_graph_term,
    decode_graph_term,
    eager_term,
    fit_step_correction,
    head_term,
    host_share_term,
    packed_at_start,
    share_pct,
    with_graph,
    with_outside,
    with_step,
)
from gpu_simulate_test.vidur_ext.step_correction import META_KEY as STEP_CORRECTION_KEY
from gpu_simulate_test.vidur_ext.step_correction import (
    CHUNK_KEY,
    GRAPH_KEY,
    HOST_KEY,
    IDLE_KEY,
    OUTSIDE_KEY,
    ROW_KEYS_KEY,
    ChunkGraph,
    DecodeGraph,
    HostTerm,
    IdleStart,
    OutsideLayers,
    RowKeys,
    row_keys,
)
from gpu_simulate_test.vidur_ext.verdict import MEASURED, BundleVerdict, bundle_verdict

log = logging.getLogger(__name__)

# How a native bundle's rows are read where Vidur 0.0.26 would read them otherwise (``step_correction.RowKeys``):
# prefill attention at the KV before the chunk, as measured; token rows at the step's own tokens (rows 1-7: the
# engine's one-row path for a lone decode), padded up to the CUDA graph the engine replays the step in (its buckets,
# read from the engine at build time; exact off a GPU, which has no graphs); batched decode attention as measured (the balanced split-KV decode costs
# what a batch's total KV does, ragged or not); a step's prompt chunks that fit one wave of the engine's prefill
# launch as the longest one's row (the wave's size measured on the device at build time, ``prefill_wave``; off a GPU
# summed), beyond one wave summed less one launch's fixed cost a chunk after the first; a prompt chunk between the
# measured chunk sizes linearly between them (``studies/2026-12-03-untimed-rebuild/prompts_per_step-vllm.txt``);
# token operators fitted on every row in every tree, so that each measured row is read back exactly
# (``studies/2026-12-03-forest/``); decode attention at the batch's mean KV, not rounded up
# (``studies/2026-12-03-bucket8/``), and at every batch size between the measured ones, not as the neighbouring
# rung (``studies/2026-12-03-sawtooth/``); a prompt chunk's attention at the KV it attends to, not rounded up
# (``studies/2026-12-04-prefill-kv/``). Written into every native bundle's meta and, as these names, into its id.
NATIVE_ROW_KEYS = RowKeys(prefill_attention_kv="before_chunk", token_rows="graph_bucket",
                          decode_batching="as_measured", prefill_chunks="one_launch", token_fit="every_row",
                          decode_attention_kv="mean", decode_attention_batch="between_measured",
                          prefill_attention_chunk="between_measured", prefill_attention_kv_read="between")
# What the step variant's cap holds, in the id: bundles before it recorded only the share beside the operators, which
# counts the measured decode graph term too (fc003abd0aa8 failed its verdict on it: 11.9%, its fitted part <= 10%).
CORRECTION_CAP = "the fitted correction's share of the predicted step (max_fitted_share_pct)"
# A step that starts on an idle engine (``step_correction.IdleStart``), timed on a lone prompt submitted these gaps
# after the engine's last step ended (0: at once, the reference), the gaps in a new order each round: at 10% load on
# the H200 the wake-up took 0.4 ms and the first step after a gap of 5 ms or more ran 0.15-0.58 ms over its
# prediction (``studies/2026-12-04-campaign/idle_arrivals.txt``). In the id.
IDLE_GAPS_MS = (0.0, 1.0, 5.0, 20.0, 50.0, 200.0)
IDLE_ROUNDS = 12
IDLE_PROMPT = 256  # tokens (at most the step's budget)
IDLE_TIMING = (f"a lone prompt of {IDLE_PROMPT} tokens after idle gaps of {list(IDLE_GAPS_MS)} ms, {IDLE_ROUNDS} "
               "interleaved rounds; the wake-up (dispatch to the step's start) plus the step's wall, less the wall at "
               "no gap, by each gap's median; interpolated from 0 at no gap")
# The head variant's terms, in the id: what changes them changes the bundle.
HEAD_TERM = ("outside the layers, measured, by the step's requests (interpolated); the host's share of a step "
             "(wall less device) measured on a request grid (each shape's median of three interleaved passes), packed ahead or at the start, by requests; a step no "
             "graph holds: its wall less the rest, measured on an eager token grid, by tokens; (step and head) a decode "
             "batch a graph runs: the graph's device time less its parts, measured on the grid's decodes, by the "
             "graph's sequences; a batch with a prompt chunk a graph runs: the same, measured on the grid's first "
             "chunks, by the step's requests, in graphs up to the largest measured")


def row_keys_record(cfg: VidurProfileAppConfig, wave: tuple[int, int] = (0, 0),
                    graphs: tuple[list[int], list[int]] = ([], [])) -> dict[str, Any]:
    """The ``row_keys`` a bundle of ``cfg`` carries: the native engine's, with ``wave`` (``EngineLayerOps.prefill_wave``:
    query blocks a KV head in one wave, tokens a block; ``(0, 0)``: chunks summed) and ``graphs`` (the engine's
    graph buckets, sequences and tokens: ``EngineLayerOps.graph_buckets``; none: token rows at exact tokens), none
    for the others (Vidur's)."""
    if cfg.backend.name != "native":
        return {}
    blocks, block_q = wave
    keys = replace(NATIVE_ROW_KEYS, prefill_wave_blocks=int(blocks), prefill_block_q=int(block_q)) \
        if blocks > 0 and block_q > 0 else replace(NATIVE_ROW_KEYS, prefill_chunks="summed")
    seqs, tokens = graphs
    keys = replace(keys, graph_batch_sizes=tuple(seqs), graph_token_sizes=tuple(tokens)) if seqs and tokens \
        else replace(keys, token_rows="exact")
    return {ROW_KEYS_KEY: keys.to_dict()}


class QuietProgress(Progress):
    """rich's bar, redrawn only when the profiler advances it (between timed steps or ops), never from a thread of its
    own: that thread takes the GIL ten times a second, also while the engine's steps are timed (real-bench's bar
    draws only when its dispatcher is idle, ``real_bench/progress.py``)."""

    def __init__(self) -> None:
        super().__init__(auto_refresh=False)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self.refresh()


# Vidur's predictor applied to a root: (root, shapes) -> predicted iteration times in ms.
Predict = Callable[[Path, list[BatchShape]], list[float]]


@dataclass(frozen=True)
class BundleResult:
    path: Path
    reused: bool
    check: pd.DataFrame
    verdict: BundleVerdict
    imported: bool = False  # from Vidur's own files (mode=import): verdict unverified, no held-out check


def bundle_config(cfg: VidurProfileAppConfig) -> dict[str, Any]:
    return {"model": asdict(cfg.model), "hardware": asdict(cfg.hardware), "backend": asdict(cfg.backend), "profile": asdict(cfg.profile)}


def bundle_request(groups: dict[str, Any]) -> dict[str, Any]:
    """The request a bundle answers: its config groups (:func:`bundle_config`, or as a bundle's meta recorded them)
    without the fields left at their defaults, the form its id hashes; two bundles of one request differ only in how
    they were measured."""
    return without_defaults(groups, VidurProfileAppConfig)


def request_differs(cfg: VidurProfileAppConfig, meta: dict[str, Any]) -> list[str]:
    """The config groups in which the request a bundle's meta records differs from ``cfg``'s (``bundle_request``:
    fields at their defaults aside); empty for a bundle of the same request."""
    recorded = meta.get("config") or {}
    groups = bundle_config(cfg)
    want, got = bundle_request(groups), bundle_request({k: recorded.get(k) for k in groups})
    return sorted(k for k in groups if canonical_json(got.get(k)) != canonical_json(want.get(k)))


def bundle_id(cfg: VidurProfileAppConfig) -> str:
    """Content hash of model + hardware + backend + grid/timing config (and, for ``native``, the engine's source,
    ``engine.id_basis``, and how its ops are timed, ``operators.OPERATOR_TIMING``): the same request finds the same
    bundle."""
    c = {**bundle_request(bundle_config(cfg)), **id_basis(cfg.backend.name)}
    if cfg.backend.name == "native":
        c.update(operator_timing=OPERATOR_TIMING, row_keys=NATIVE_ROW_KEYS.to_dict(), head_term=HEAD_TERM,
                 step_timing=STEP_TIMING, correction_cap=CORRECTION_CAP, idle_timing=IDLE_TIMING)
    return f"{cfg.model.name}-{cfg.hardware.name}-{cfg.backend.name}-{short_hash(canonical_json(c))}"


def _stats_row(samples: dict[str, np.ndarray]) -> dict[str, float]:
    return {f"time_stats.{op}.{s}": v for op, arr in samples.items() for s, v in stats_ms(arr).items()}


def _measure_operators(ops: OperatorSource, grid: Grid, cfg: VidurProfileAppConfig, method: TimingMethod, sync: Any,
                       progress: Progress) -> tuple[pd.DataFrame, pd.DataFrame]:
    m = cfg.model
    common = {"n_head": m.num_attention_heads, "n_kv_head": m.num_kv_heads, "n_embd": m.hidden_size,
              "n_expanded_embd": m.intermediate_size, "vocab_size": m.vocab_size, "use_gated_mlp": True,
              "num_tensor_parallel_workers": pr.TENSOR_PARALLEL_SIZE}
    task = progress.add_task("operators (num_tokens)", total=len(grid.token_points))
    mlp_rows = []
    for n, samples in time_token_ops(ops, grid.token_points, method, sync):
        mlp_rows.append({"num_tokens": n, **common, **_stats_row(samples)})
        progress.advance(task)
    att_common = {"n_embd": m.hidden_size, "n_q_head": m.num_attention_heads, "n_kv_head": m.num_kv_heads,
                  "block_size": grid.limits.block_size, "num_tensor_parallel_workers": pr.TENSOR_PARALLEL_SIZE,
                  "max_model_len": grid.limits.request_tokens, "attention_backend": ops.attention_backend}
    task = progress.add_task("attention (prefill, decode)", total=len(grid.prefill_points) + len(grid.decode_points))
    att_rows = []
    for kind, a, kv, samples in time_attention(ops, grid.prefill_points, grid.decode_points, method, sync):
        pre = kind == "prefill"
        att_rows.append({"batch_size": 1 if pre else a, "prefill_chunk_size": a if pre else 0, "kv_cache_size": kv,
                         "is_prefill": pre, **att_common, **_stats_row(samples)})
        progress.advance(task)
    return pd.DataFrame(mlp_rows), pd.DataFrame(att_rows)


def _measure_head(ops: Any, grid: Grid, method: TimingMethod, sync: Any, progress: Progress) -> dict[str, list]:
    """The step's work outside its layers at each token point, as many sampling rows as tokens up to the batch cap
    (a decode's rows; a prefill's, which sample one row, get the cap's: the LM head's cost barely moves with rows):
    ``profile_meta.json`` ``head_timing``, the ``head`` variant's term."""
    points = [(n, min(n, grid.limits.batch_size)) for n in grid.token_points]
    task = progress.add_task("outside the layers", total=len(points))
    record: dict[str, list] = {"num_tokens": [], "rows": [], "ms": []}
    for n, rows, samples in time_outside_layers(ops, points, method, sync):
        record["num_tokens"].append(n)
        record["rows"].append(rows)
        record["ms"].append(float(np.median(samples)))
        progress.advance(task)
    return record


def _wanted_shapes(cfg: VidurProfileAppConfig) -> list[tuple[BatchShape, str]]:
    """The fit, validation and test shapes with their roles (``ProfileConfig.shape_sets``: disjoint, also once
    parsed: ``decode:8x01024`` is ``decode:8x1024``)."""
    parsed = [(BatchShape.parse(s, f"profile.{role}"), role) for role, shapes in cfg.profile.shape_sets().items()
              for s in shapes]
    seen = [str(s) for s, _ in parsed]
    dup = sorted({s for s in seen if seen.count(s) > 1})
    if dup:
        raise InputError(f"profile.fit / validation / test list {dup} more than once; the three sets must be disjoint")
    return parsed


HOST_GRID_KV = 512  # the KV of the host grid's decodes (the hand-over does not follow it)
HOST_GRID_CHUNK = 256  # the first chunk of the host grid's steps packed at their start


def host_grid(grid: Grid, timer: StepTimer, graph_tokens: Sequence[int] = (), taken: Sequence[int] = (),
              graph_seqs: Sequence[int] = ()) -> list[BatchShape]:
    """The shapes the ``head`` variant's host share is measured on (``variants.host_share_term``), at every request
    count of the grid's batch ladder (as the work outside the layers is measured at every token point): ``n``
    decodes (packed ahead) and a first chunk beside ``n - 1`` decodes (packed at its start; alone, on an idle engine,
    for ``n = 1``), those the backend's policy can run; decodes also at the fewest of every decode graph of the engine
    (``graph_seqs``: its sequence buckets; none off a GPU), one more than the bucket below, where its padding
    sequences are the most (``variants.decode_graph_term``); and where a step may hold more tokens than the engine's
    largest CUDA graph (``graph_tokens``: its token buckets), prefills that no graph holds, at ``eager_points``
    (``variants.eager_term``). Their measured steps enter no fit, validation or test set, and no eager point has the
    tokens of one of those (``taken``)."""
    kv = min(HOST_GRID_KV, grid.limits.request_tokens // 2)
    # a chunk the grid's prefill rows cover (the chunk graph term predicts these steps from them)
    chunk = min(HOST_GRID_CHUNK, timer.limits.token_budget - grid.limits.batch_size, grid.limits.prefill_chunk)
    counts = ladder(grid.limits.batch_size)
    buckets = sorted(b for b in set(graph_seqs) if b <= grid.limits.batch_size)
    fewest = {lower + 1 for lower in buckets[:-1]} - set(counts)
    shapes = []
    for n in sorted({*counts, *fewest}):
        shapes.append(BatchShape(0, n, kv))
        if chunk > 1 and n in counts:
            shapes.append(BatchShape(chunk, n - 1, kv if n > 1 else 0))
    largest = max(graph_tokens, default=0)
    if largest:
        limit = min(timer.limits.token_budget, grid.limits.request_tokens - 1)
        shapes += [BatchShape(t, 0, 0) for t in eager_points(largest, limit) if t not in set(taken)]
    return [s for s in shapes if s.decode_kv >= 1 or s.decode_batch == 0]


def eager_points(largest_graph: int, limit: int) -> list[int]:
    """Token counts above the engine's largest graph bucket, up to ``limit``: 1.5, 2.5, 3.5, 5, 7, 10, 14, 20 ...
    times it (between the powers of two that shape sets favour), and ``limit`` itself where it lies 1.25 times
    beyond the last (a grid that reaches the budget)."""
    halves = [3, 5, 7]
    while halves[-1] * largest_graph // 2 <= limit:
        halves.append(2 * halves[-2])
    points = [h * largest_graph // 2 for h in halves if h * largest_graph // 2 <= limit]
    if limit > largest_graph and (not points or limit >= 1.25 * points[-1]):
        points.append(limit)
    return points


def host_share_ns(walls: Sequence[ShapeSamples], timed: Optional[ShapeSamples]) -> float:
    """The host's share of a shape's steps: each wall less its own step's device time where the walls' steps carry
    one (the CPU's launch clock slows nothing), else the median wall less the median device time of ``timed``, a
    round of its own (CUDA events slow the steps they time: ``host_share.StepProbe.untimed``)."""
    if all(x.device_ns is not None for x in walls):
        return float(np.median(np.concatenate([x.ns - x.device_ns for x in walls])))
    if timed is None or timed.device_ns is None:
        raise RuntimeError("the timed round's steps launched untimed: it must run outside StepProbe.untimed()")
    return float(np.median(np.concatenate([x.ns for x in walls])) - np.median(timed.device_ns))


HOST_GRID_PASSES = 3  # passes over the host grid, interleaved; each shape's median pass is kept
DRIFT_WARN_PCT = 5.0  # passes further apart than this: the build warns
HOST_GRID_FIELDS = ("shape", "requests", "tokens", "at_start", "packed_at_start", "host_ms", "wall_ms", "wall_spread_pct")


def _time_host_grid(backend: Backend, timer: StepTimer, recorder: Recorder, probe: Any, shapes: Sequence[BatchShape],
                    apart: bool, progress: Progress) -> dict[str, list]:
    """The host grid's record (``host_grid``: ``shape``, ``requests``, ``tokens``, ``at_start``, ``packed_at_start``,
    ``host_ms``, ``wall_ms``, ``wall_spread_pct``), timed in :data:`HOST_GRID_PASSES` passes over every shape, each
    shape's host share and wall the median of its passes'. In one pass, neighbouring request counts are timed seconds
    apart, so a host that drifts for a few seconds moved them together: one build's decodes of 5-12 requests came out
    3% slower than the same shape timed earlier in the build, and Vidur predicted a loaded server's commonest steps
    that much long (``studies/2026-12-04-campaign/``). ``wall_spread_pct``: the passes' walls, largest less smallest,
    in % of the kept one."""
    record: dict[str, list] = {k: [] for k in HOST_GRID_FIELDS}
    if not shapes:  # a bar only for work there is (off a GPU nothing measures the host's share)
        return record
    task = progress.add_task("the host's share (request grid)", total=len(shapes) * HOST_GRID_PASSES)
    passes: dict[str, list[tuple[float, float, np.ndarray]]] = {str(s): [] for s in shapes}
    for _ in range(HOST_GRID_PASSES):
        for shape in shapes:
            with untimed(probe):
                walls = timer.measure(backend, recorder, shape, probe)
            got = timer.measure(backend, recorder, shape, probe) if apart else None
            assert walls.at_start is not None
            passes[str(shape)].append((host_share_ns([walls], got) / 1e6, float(np.median(walls.ns)) / 1e6,
                                       walls.at_start))
            progress.advance(task)
    for shape in shapes:
        host_ms, wall_ms, at_start = zip(*passes[str(shape)])
        wall = float(np.median(wall_ms))
        record["shape"].append(str(shape))
        record["requests"].append(shape.batch_size)
        record["tokens"].append(shape.num_tokens)
        record["at_start"].append(packed_at_start(shape))
        record["packed_at_start"].append(float(np.concatenate(at_start).mean()))
        record["host_ms"].append(float(np.median(host_ms)))
        record["wall_ms"].append(wall)
        record["wall_spread_pct"].append(100 * (max(wall_ms) - min(wall_ms)) / wall)
    return record


def _time_idle_starts(backend: Backend, timer: StepTimer, recorder: Recorder, probe: Any, progress: Progress
                      ) -> dict[str, Any]:
    """The ``idle_timing`` record: a lone prompt (:data:`IDLE_PROMPT` tokens, at most the budget) submitted each of
    :data:`IDLE_GAPS_MS` after the engine's last step ended, :data:`IDLE_ROUNDS` rounds with the gaps in a new order
    each (a drifting host moves every gap alike); per gap the medians of the gap it got, the wake-up and the wall (ms).
    Walls with the probe's events off, as runs have them."""
    prompt = max(1, min(IDLE_PROMPT, timer.limits.token_budget))
    got: dict[float, list[tuple[int, int, int]]] = {g: [] for g in IDLE_GAPS_MS}
    task = progress.add_task("a step after an idle gap", total=IDLE_ROUNDS * len(IDLE_GAPS_MS))
    with untimed(probe):
        for r in range(IDLE_ROUNDS):
            for g in np.random.default_rng(r).permutation(IDLE_GAPS_MS):
                got[float(g)].append(timer.idle_start(backend, recorder, prompt, int(round(g * 1e6))))
                progress.advance(task)
    med = {g: np.median(np.asarray(v, dtype=float), axis=0) / 1e6 for g, v in got.items()}
    return {"prompt_tokens": prompt, "nominal_gap_ms": list(IDLE_GAPS_MS),
            **{k: [float(med[g][i]) for g in IDLE_GAPS_MS] for i, k in enumerate(("gap_ms", "wake_ms", "wall_ms"))}}


def idle_start_term(record: dict[str, Any]) -> IdleStart:
    """The ``idle_start`` term from the ``idle_timing`` record: at each gap the wake-up plus the wall, less the wall
    at no gap (the lone prompt as the shape sets and the host grid time it, resubmitted at once), by the gap it got;
    a gap no longer than the one before it (a slow resubmission) is dropped."""
    ref = record["wall_ms"][record["nominal_gap_ms"].index(0.0)]
    gaps, ms = [], []
    for gap, wake, wall in sorted(zip(record["gap_ms"], record["wake_ms"], record["wall_ms"])):
        if gap > (gaps[-1] if gaps else 0.0):
            gaps.append(float(gap))
            ms.append(float(wake + wall - ref))
    return IdleStart(tuple(gaps), tuple(ms))


def _measure_iterations(backend: Backend, timer: StepTimer, parsed: list[tuple[BatchShape, str]], rounds: int,
                        progress: Progress, host_shapes: Sequence[BatchShape] = (), host_share: bool = False
                        ) -> tuple[pd.DataFrame, list[str], dict[str, list], Optional[dict[str, Any]]]:
    """Time every feasible shape through the backend's driver; the table, the skipped shapes, the host grid's record
    and the idle record. ``host_share``: also each step's device time and packing on the native engine
    (``host_share.StepProbe``): the host's share of it, in the table, and measured on ``host_shapes`` (after the sets)
    for the record (:func:`_time_host_grid`), then a step after idle gaps (:func:`_time_idle_starts`; else None).
    Every step is timed as real-bench runs it (``backends.conditions.measured_run``), its wall with the
    probe's events off, since they slow the steps they time; the device times in a round of their own
    (:func:`host_share_ns`)."""
    measured, skipped = [], []
    for shape, role in parsed:
        why = timer.unsupported(shape)
        if why is None:
            measured.append((shape, role))
        else:
            skipped.append(f"{shape} ({role}): {why}")
    samples: dict[str, list[ShapeSamples]] = {str(s): [] for s, _ in measured}
    timed: dict[str, ShapeSamples] = {}  # the device-time round, where the probe times steps apart
    recorder = Recorder([], RunClock())
    with stepping(backend, recorder, probed=host_share) as probe:
        apart = probe is not None and probe.times_apart
        task = progress.add_task("whole iterations", total=len(measured) * (rounds + (1 if apart else 0)))
        # Round-robin over the shapes: a host that drifts (other tenants, clocks) moves every set alike.
        for _ in range(rounds):
            for shape, _role in measured:
                with untimed(probe):
                    samples[str(shape)].append(timer.measure(backend, recorder, shape, probe))
                progress.advance(task)
        if apart:
            for shape, _role in measured:
                timed[str(shape)] = timer.measure(backend, recorder, shape, probe)
                progress.advance(task)
        feasible = [s for s in host_shapes if timer.unsupported(s) is None] if probe is not None else []
        grid_record = _time_host_grid(backend, timer, recorder, probe, feasible, apart, progress)
        idle_record = _time_idle_starts(backend, timer, recorder, probe, progress) if probe is not None else None
    rows = []
    for shape, role in measured:
        ns = np.concatenate([x.ns for x in samples[str(shape)]])
        kv = [x.decode_kv for x in samples[str(shape)] if x.decode_kv is not None]
        host: dict[str, Any] = {"host_median_ns": None, "packed_at_start": None}
        if host_share:
            at_start = np.concatenate([x.at_start for x in samples[str(shape)] if x.at_start is not None])
            host = {"host_median_ns": int(round(host_share_ns(samples[str(shape)], timed.get(str(shape))))),
                    "packed_at_start": float(at_start.mean())}
        rows.append({"shape": str(shape), "role": role, "batch_size": shape.batch_size,
                     "num_prefill_tokens": shape.prefill_tokens, "num_decode_tokens": shape.decode_batch,
                     "num_samples": len(ns), "median_ns": int(np.median(ns)),
                     "p10_ns": int(np.percentile(ns, 10)), "p90_ns": int(np.percentile(ns, 90)),
                     "trimmed_mean_ns": int(round(trimmed_mean(ns))), "decode_kv_measured": float(np.mean(kv)) if kv else None,
                     **host})
    for s in skipped:
        log.info("skipped batch shape %s (listed in profile_meta.json)", s)
    return pd.DataFrame(rows, columns=ITERATION_PROFILE.column_names), skipped, grid_record, idle_record


def _write_root(path: Path, cfg: VidurProfileAppConfig, bid: str, mlp: pd.DataFrame, att: pd.DataFrame,
                iters: pd.DataFrame, check: pd.DataFrame, grid: Grid, extra: dict[str, Any],
                raw: Optional[tuple[pd.DataFrame, pd.DataFrame]] = None, validation: Optional[pd.DataFrame] = None) -> None:
    """A root whose ``mlp.csv``/``attention.csv`` are ``mlp``/``att``; ``raw`` (the rows as measured) and
    ``validation`` (each variant on the validation shapes) are kept beside them."""
    from gpu_simulate_test.vidur_ext.registration import vidur_model_name

    write_table(mlp, path / pr.MLP_FILE, MLP_PROFILE)
    write_table(att, path / pr.ATTENTION_FILE, ATTENTION_PROFILE)
    if raw is not None:
        write_table(raw[0], path / pr.MLP_RAW_FILE, MLP_RAW_PROFILE)
        write_table(raw[1], path / pr.ATTENTION_RAW_FILE, ATTENTION_RAW_PROFILE)
    write_table(iters, path / pr.ITERATIONS_FILE, ITERATION_PROFILE)
    write_table(check, path / pr.HELD_OUT_FILE, HELD_OUT_CHECK)
    if validation is not None:
        write_table(validation, path / pr.VALIDATION_FILE, VALIDATION_CHECK)
    write_json(path / pr.DATASET_CONFIG_FILE, {"model": vidur_model_name(cfg.model), "device_sku": cfg.hardware.vidur_device})
    inputs = {"workload_id": cfg.workload_id} if cfg.workload_id else {}  # the workload the grid was sized to
    meta = build_meta(kind=pr.BUNDLE_KIND, id=bid, config=bundle_config(cfg), inputs=inputs,
                      grid_limits=grid.limits.to_dict(), **id_basis(cfg.backend.name), **extra)
    write_json(path / PROFILE_META, meta)


TEST_ROLES = ("test", "held_out")  # held_out: the test rows of bundles built before the three shape sets


def measured_shapes(iters: pd.DataFrame, role: str) -> tuple[list[str], list[BatchShape], list[float]]:
    """The shapes of ``role`` (``test`` also reads ``held_out``): their names as configured, the shapes as their steps
    ran (with the KV their decodes had, ``decode_kv_measured``, where recorded) and their measured step in ms (the
    trimmed mean, else the median)."""
    sub = iters[iters["role"].isin(TEST_ROLES if role == "test" else (role,))]
    names = sub["shape"].tolist()
    shapes = [BatchShape.parse(s) for s in names]
    if "decode_kv_measured" in sub.columns:
        shapes = [s.with_decode_kv(round(kv)) if pd.notna(kv) else s for s, kv in zip(shapes, sub["decode_kv_measured"])]
    target = "trimmed_mean_ns" if "trimmed_mean_ns" in sub.columns else "median_ns"
    return names, shapes, (sub[target] / 1e6).tolist()


def _operator_source(backend: Backend, cfg: VidurProfileAppConfig) -> OperatorSource:
    """The native engine's own layer methods and kernels; for the other backends their transformers model's layer."""
    engine = backend.native_engine()
    if engine is None:
        return LayerOps(backend.torch_model(), cfg.backend.attn_implementation)
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps  # torch and triton: only here

    return EngineLayerOps(engine)


def _load(backend: Backend) -> str:
    """The driver's ``load`` (its weights source), with one message for whatever transformers raises."""
    try:
        return backend.load()
    except GstError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the user needs one message
        raise InputError(f"backend {backend.name} cannot build model {backend.model_cfg.name}: {type(exc).__name__}: {exc}") from exc


def _fit_variants(cfg: VidurProfileAppConfig, mlp: pd.DataFrame, att: pd.DataFrame, iters: pd.DataFrame, grid: Grid,
                  bid: str, scratch: Path, fit_shapes: list[BatchShape], fit_ms: list[float], val_shapes: list[BatchShape],
                  raw_fit: np.ndarray, raw_val: np.ndarray, predict: Predict,
                  capped: Sequence[tuple[BatchShape, float]] = (),
                  outside: Optional[OutsideLayers] = None, keys: Optional[dict[str, Any]] = None,
                  host: Optional[HostTerm] = None, graph: Optional[DecodeGraph] = None,
                  chunk: Optional[ChunkGraph] = None) -> tuple[list[Candidate], Any]:
    """Each variant of ``profile.variants`` fitted on the fit shapes only, with what it predicts for the validation
    shapes (``variants.py``); also the fold's coefficients and rows when it is a candidate. ``capped``: the validation
    and test shapes with their operators' predictions, on which the step correction's cap holds too. ``outside``:
    the step's work outside its layers as measured (``_measure_head``, ``variants.head_term``), and ``host`` the
    host's share on the request grid (``variants.host_share_term``, ``eager_term``), for the ``head`` variant;
    ``graph`` and ``chunk``: the decode graphs' and the prompt chunks' step graphs' cost beyond their parts
    (``variants.decode_graph_term``, ``chunk_graph_term``), which ``step`` and ``head`` add to the operators first
    (``capped`` holds the operators with them); ``keys``: the bundle's
    ``row_keys`` record (``row_keys_record``), with which the rows are read."""
    candidates, folded = [], None
    reading = row_keys((keys or {}).get(ROW_KEYS_KEY))
    graph_fit, graph_val = (with_graph(graph, shapes, ms, reading, chunk) for shapes, ms in ((fit_shapes, raw_fit),
                                                                                              (val_shapes, raw_val)))
    for name in check_variants(list(cfg.profile.variants)):
        if name == "operators":
            candidates.append(Candidate(name, raw_val))
        elif name == "head":
            assert outside is not None and host is not None, "the head variant needs its two terms measured"
            candidates.append(Candidate(name, with_outside(outside, val_shapes, graph_val, reading, host),
                                        outside=outside, host=host, graph=graph, chunk=chunk))
        elif name == "step":
            step = fit_step_correction(fit_shapes, fit_ms, list(graph_fit), cfg.profile.correction_cap_pct,
                                       also_capped=capped)
            candidates.append(Candidate(name, with_step(step, val_shapes, graph_val), step, graph=graph, chunk=chunk))
        else:
            overhead = fit_overhead(fit_shapes, fit_ms, list(raw_fit))
            rows = fold(mlp, att, overhead, cfg.model.num_layers, cfg.model.num_attention_heads > cfg.model.num_kv_heads)
            folded = (overhead, rows)
            pred = np.array([])
            if val_shapes:
                with tempfile.TemporaryDirectory(prefix=".fold-", dir=scratch) as tmp:
                    _write_root(Path(tmp), cfg, bid, *rows, iters, pd.DataFrame(columns=HELD_OUT_CHECK.column_names),
                                grid, {"stage": "folded rows", **(keys or {})})
                    pred = np.asarray(predict(Path(tmp), val_shapes), dtype=float)
            candidates.append(Candidate(name, pred))
    return candidates, folded


def _correction_record(variant: str, cap_pct: float, final: np.ndarray, raw: np.ndarray, split: np.ndarray,
                       fitted: Optional[np.ndarray] = None) -> dict[str, Any]:
    """``profile_meta.json`` ``correction``: how much of each predicted step is correction rather than operators, per
    shape set (median and max), and the cap it is held to (the step variant's only). ``fitted``: the step variant's
    fitted correction of each step (ms); its share of the predicted step is what the cap holds (``fitted_share_pct``,
    ``max_fitted_share_pct``), while ``share_pct`` also counts the measured decode graph term beside it."""

    def by_set(share: np.ndarray) -> dict[str, Optional[dict[str, float]]]:
        return {name: {"median": float(np.median(part)), "max": float(part.max())} if len(part) else None
                for name, part in zip(("fit", "validation", "test"), np.split(share, split))}

    share = share_pct(final, raw)
    record: dict[str, Any] = {"variant": variant, "cap_pct": float(cap_pct) if variant == "step" else None,
                              "max_share_pct": float(share.max()), "share_pct": by_set(share)}
    if fitted is not None:
        capped = 100.0 * np.abs(np.asarray(fitted, dtype=float)) / np.asarray(final, dtype=float)
        record.update(max_fitted_share_pct=float(capped.max()), fitted_share_pct=by_set(capped))
    return record


@dataclass
class Measured:
    """What a build measured on the device, all that the derivation (``_derive``) reads: the operator rows as measured,
    the whole steps of the shape sets, the skipped shapes, the ``row_keys`` record (the engine's launch wave and graph
    buckets), the work outside the layers and the host grid's record (``head`` listed), how it was timed and on what;
    ``derived_from``: the bundle they were read back from (``rederive_bundle``); ``idle_record``: a step after idle
    gaps (``_time_idle_starts``), where the host's share was measured."""

    mlp: pd.DataFrame
    att: pd.DataFrame
    iters: pd.DataFrame
    skipped: list[str]
    keys: dict[str, Any]
    head: Optional[dict[str, list]]
    host_record: dict[str, list]
    timing_method: str
    weights_source: str
    sdpa_kernels: Any
    host_load: dict[str, Any]
    build_wall_s: Optional[float] = None
    derived_from: Optional[dict[str, Any]] = None
    idle_record: Optional[dict[str, Any]] = None


def _derive(cfg: VidurProfileAppConfig, bid: str, grid: Grid, m: Measured, predict: Predict, out: Path,
            t_start: Optional[float] = None) -> tuple[pd.DataFrame, BundleVerdict]:
    """Everything a build makes of its measurements (``m``): the grid's terms, the variants fitted on the fit shapes
    and chosen on the validation shapes, the test check against both baselines, the verdict; the bundle written at
    ``out``. The same for a fresh build and a rederived one (``rederive_bundle``). ``t_start``: the build's start (its
    wall time in the meta), None to keep ``m``'s."""
    iters, keys, head, host_record = m.iters, m.keys, m.head, dict(m.host_record)
    measure_host = "head" in cfg.profile.variants
    sets = {role: measured_shapes(iters, role) for role in ("fit", "validation", "test")}
    reading = row_keys(keys.get(ROW_KEYS_KEY))
    outside = head_term(head) if head is not None else None
    eager_shapes: list[BatchShape] = []
    graph_shapes: list[BatchShape] = []
    graph_seqs: list[Optional[int]] = []
    graph_tokens: list[Optional[int]] = []  # the tokens of the graph that runs each grid step (None: no graph)
    chunk_shapes: list[BatchShape] = []
    if measure_host:  # which grid steps no graph of the engine holds, and which decodes one does: its own rule
        grid_shapes = [BatchShape.parse(n) for n in host_record["shape"]]
        graphs = [reading.graph(s.num_tokens, s.batch_size, s.kind == "decode") for s in grid_shapes]
        host_record["eager"] = [reading.token_rows == "graph_bucket" and g is None for g in graphs]
        eager_shapes = [s for s, e in zip(grid_shapes, host_record["eager"]) if e]
        graph_seqs = [g[1] if g is not None and s.kind == "decode" else None for s, g in zip(grid_shapes, graphs)]
        graph_shapes = [s for s, g in zip(grid_shapes, graph_seqs) if g is not None]
        graph_tokens = [None if g is None else g[0] for g in graphs]
        chunk_shapes = [s for s, t in zip(grid_shapes, graph_tokens) if t is not None and s.kind != "decode"]
    host, host_timing = host_share_term(host_record) if measure_host else (None, None)
    drifted = [(s, p) for s, p in zip(host_record["shape"], host_record.get("wall_spread_pct", [])) if p > DRIFT_WARN_PCT]
    if drifted:
        log.warning("the host grid's passes disagree by more than %g%% on %d shape(s) (%s): the host drifted while "
                    "it was timed; each keeps its median pass (host_timing.wall_spread_pct)", DRIFT_WARN_PCT,
                    len(drifted), ", ".join(f"{s} {p:.1f}%" for s, p in drifted[:4]))
    _, fit_shapes, fit_ms = sets["fit"]
    val_names, val_shapes, val_ms = sets["validation"]
    test_names, test_shapes, test_ms = sets["test"]
    if not fit_shapes:
        raise InputError("profile.fit lists no shape this backend can run; add prefill and decode shapes to the profile config")
    every = fit_shapes + val_shapes + test_shapes  # in this order in every prediction below
    empty_check = pd.DataFrame(columns=HELD_OUT_CHECK.column_names)
    with tempfile.TemporaryDirectory(prefix=".raw-", dir=out.parent) as raw:
        _write_root(Path(raw), cfg, bid, m.mlp, m.att, iters, empty_check, grid, {"stage": "raw operator rows", **keys})
        # the operators alone (test: shares, cap), and of the grid's eager steps, graph decodes and graph steps
        # with a prompt chunk, in one predictor
        raw_pred, raw_eager, raw_graph, raw_chunk = np.split(
            np.asarray(predict(Path(raw), every + eager_shapes + graph_shapes + chunk_shapes), dtype=float),
            np.cumsum([len(every), len(eager_shapes), len(graph_shapes)]))
    graph = None
    if graph_shapes:  # the decode graphs' cost beyond their parts: device time less operators and outside
        assert outside is not None
        graph = decode_graph_term(host_record, graph_seqs, list(with_outside(outside, graph_shapes, raw_graph,
                                                                             reading)))
    chunk = None
    if chunk_shapes:  # the same for graph steps with a prompt chunk (the decode graph term is 0 on them)
        assert outside is not None
        chunk = chunk_graph_term(host_record, graph_tokens, list(with_outside(outside, chunk_shapes, raw_chunk,
                                                                              reading)))
    if eager_shapes:  # the eager term: what such a step costs beyond the rest of the head variant
        assert outside is not None and host is not None
        host = replace(host, eager=eager_term(host_record, list(with_outside(outside, eager_shapes, raw_eager,
                                                                             reading, host))))
    split = np.cumsum([len(fit_shapes), len(val_shapes)])
    raw_fit, raw_val, raw_test = np.split(raw_pred, split)
    capped = list(zip(val_shapes + test_shapes,  # operators' predictions (with the graph term), not measurements
                      with_graph(graph, val_shapes + test_shapes, np.concatenate([raw_val, raw_test]), reading,
                                 chunk)))
    candidates, folded = _fit_variants(cfg, m.mlp, m.att, iters, grid, bid, out.parent, fit_shapes, fit_ms, val_shapes,
                                       raw_fit, raw_val, predict, capped, outside, keys, host, graph, chunk)
    chosen, validation, val_record = choose(candidates, val_names, np.asarray(val_ms, dtype=float))
    winner = next(c for c in candidates if c.name == chosen)
    overhead, (mlp_out, att_out) = folded if chosen == "fold" and folded is not None else (None, (m.mlp, m.att))
    extra = {"timing_method": m.timing_method, "weights_source": m.weights_source, "sdpa_kernels": m.sdpa_kernels,
             "variant": chosen, "overhead_fit": None if overhead is None else overhead.to_dict(),
             STEP_CORRECTION_KEY: None if winner.step is None else winner.step.to_dict(),
             OUTSIDE_KEY: None if winner.outside is None else winner.outside.to_dict(),
             HOST_KEY: None if winner.host is None else winner.host.to_dict(),
             GRAPH_KEY: None if winner.graph is None else winner.graph.to_dict(),
             CHUNK_KEY: None if winner.chunk is None else winner.chunk.to_dict(),
             IDLE_KEY: None if m.idle_record is None else idle_start_term(m.idle_record).to_dict(), **keys,
             "skipped_shapes": m.skipped,
             "backend_measured": cfg.backend.name, "source": MEASURED, "host_load": m.host_load,
             "validation_check": val_record, "head_timing": head,
             "host_timing": host_timing, "idle_timing": m.idle_record,
             **({"derived_from": m.derived_from} if m.derived_from else {})}
    if host_timing is not None and host_timing["packed_otherwise"]:
        log.warning("the engine packed the steps of %s otherwise than a first chunk's rule says (profile_meta.json "
                    "host_timing): their host share sits in the other curve", host_timing["packed_otherwise"])
    _write_root(out, cfg, bid, mlp_out, att_out, iters, empty_check, grid, extra, raw=(m.mlp, m.att), validation=validation)
    # The bundle as vidur-sim reads it (its rows; its step correction inside Vidur's predictor), on every set.
    bundle_pred = np.asarray(predict(out, every), dtype=float)
    fit_pred, _, test_pred = np.split(bundle_pred, split)
    fit_err = 100.0 * np.abs(fit_pred - np.asarray(fit_ms)) / np.asarray(fit_ms)
    extra["fit_check"] = {"num_shapes": len(fit_err), "median_abs_error_pct": float(np.median(fit_err))}
    fitted = None if winner.step is None else with_step(winner.step, every, np.zeros(len(every)))
    extra["correction"] = _correction_record(chosen, cfg.profile.correction_cap_pct, bundle_pred, raw_pred, split,
                                             fitted)
    baselines = fit_baselines(fit_shapes, fit_ms)
    check = baseline_table(test_names, test_shapes, np.asarray(test_ms, dtype=float), test_pred, baselines)
    abs_err = np.abs(check["error_pct"].to_numpy(dtype=float))
    table = check[["shape", "measured_ns", "predicted_ns", "error_pct"]]
    summary = {"num_shapes": len(check), "median_abs_error_pct": float(np.median(abs_err)) if len(check) else None,
               "max_abs_error_pct": float(abs_err.max()) if len(check) else None,
               "tolerance_pct": float(cfg.profile.held_out_tolerance_pct), "table": table.to_dict(orient="records")}
    extra.update(held_out_check=summary, baseline_check=baseline_record(check, baselines) if len(check) else None,
                 build_wall_s=m.build_wall_s if t_start is None else round(time.monotonic() - t_start, 1))
    verdict = bundle_verdict(extra)
    extra["verdict"] = verdict.verdict
    _write_root(out, cfg, bid, mlp_out, att_out, iters, check, grid, extra, raw=(m.mlp, m.att), validation=validation)
    return check, verdict


def _checked_grid(cfg: VidurProfileAppConfig) -> Grid:
    """The profile's grid, once its settings are checked (before anything is measured or derived)."""
    grid = build_grid(cfg.model, cfg.backend, cfg.profile)
    if cfg.profile.iteration_rounds < 1:
        raise InputError(f"profile.iteration_rounds must be >= 1, not {cfg.profile.iteration_rounds}")
    if not cfg.profile.held_out_tolerance_pct > 0:
        raise InputError(f"profile.held_out_tolerance_pct must be > 0, not {cfg.profile.held_out_tolerance_pct}")
    check_variants(list(cfg.profile.variants))
    if "head" in cfg.profile.variants and cfg.backend.name != "native":
        raise InputError(f"profile.variants lists head, which times the native engine's own head, but the backend is "
                         f"{cfg.backend.name}: list it for backend=native only")
    if not 0 < cfg.profile.correction_cap_pct < 100:
        raise InputError(f"profile.correction_cap_pct={cfg.profile.correction_cap_pct}: it must be in (0, 100)")
    return grid


def rederive_bundle(cfg: VidurProfileAppConfig, source: Path, predict: Predict) -> BundleResult:
    """Today's bundle of ``cfg`` derived, without a device, from what another build of the same request on the same
    engine measured (``source``, its root): its operator rows as measured, its shape sets' steps, the work outside the
    layers and its request grid, read back and derived again by this code (``_derive``). For a change to the
    derivation alone (a term, the verdict's record), which moves every bundle id but not what a build measures; the
    meta names the build it came from (``derived_from``). Never over an existing bundle (``overwrite`` aside)."""
    from gpu_simulate_test.io.tables import read_table

    grid = _checked_grid(cfg)
    bid = bundle_id(cfg)
    final = Path(cfg.paths.profiling) / bid
    src = pr.load_profiling_root(Path(source))
    meta = src.meta
    if Path(source).resolve() == final.resolve():
        raise InputError(f"bundle {bid} is already today's bundle of this request; there is nothing to rederive")
    if final.exists() and not cfg.overwrite:
        raise InputError(f"bundle {bid} exists at {final}; remove it or pass overwrite=true to derive it again")
    differ = request_differs(cfg, meta)
    if differ:
        raise InputError(f"bundle {src.bundle_id} was built for another request ({', '.join(differ)} differ) than "
                         f"{bid}; rederive only from a build of the same model, hardware, backend and profile")
    engine = id_basis(cfg.backend.name)
    if any(meta.get(k) != v for k, v in engine.items()):
        raise InputError(f"bundle {src.bundle_id} measured engine {meta.get('engine_code')}, not this tree's "
                         f"{engine.get('engine_code')}: its steps are another engine's; measure this one")
    raw = (src.path / pr.MLP_RAW_FILE, src.path / pr.ATTENTION_RAW_FILE)
    needs_host = "head" in cfg.profile.variants
    missing = [p.name for p in raw if not p.is_file()] + [k for k in ("head_timing", "host_timing", "idle_timing")
                                                          if needs_host and not meta.get(k)]
    if missing:
        raise InputError(f"bundle {src.bundle_id} lacks {', '.join(missing)}: it cannot be derived again; measure it")
    wave = meta.get(ROW_KEYS_KEY) or {}
    keys = row_keys_record(cfg, (int(wave.get("prefill_wave_blocks", 0)), int(wave.get("prefill_block_q", 0))),
                           (list(wave.get("graph_batch_sizes", [])), list(wave.get("graph_token_sizes", []))))
    host_record = {k: list(v) for k, v in (meta.get("host_timing") or {}).items()
                   if k not in ("packed_otherwise", "eager")} or {k: [] for k in HOST_GRID_FIELDS}
    measured = Measured(read_table(raw[0], MLP_RAW_PROFILE), read_table(raw[1], ATTENTION_RAW_PROFILE),
                        read_table(src.iterations_csv, ITERATION_PROFILE), list(meta.get("skipped_shapes") or []),
                        keys, meta.get("head_timing") if needs_host else None, host_record, str(meta["timing_method"]),
                        str(meta.get("weights_source")), meta.get("sdpa_kernels"), dict(meta["host_load"]),
                        meta.get("build_wall_s"), idle_record=meta.get("idle_timing") if needs_host else None,
                        derived_from={"id": src.bundle_id, "content": src.content,
                                      "created_at": (meta.get("provenance") or {}).get("created_at"),
                                      "git_commit": (meta.get("provenance") or {}).get("git_commit")})
    with atomic_dir(final, overwrite=cfg.overwrite) as out:
        check, verdict = _derive(cfg, bid, grid, measured, predict, out)
    log.log(logging.INFO if verdict.accepted else logging.WARNING, "bundle %s (derived from %s): verdict %s", bid,
            src.bundle_id, verdict.line())
    return BundleResult(final, False, check, verdict)


def build_bundle(cfg: VidurProfileAppConfig, predict: Predict) -> BundleResult:
    """Measure and write ``<paths.profiling>/<bundle_id>/``; an existing complete bundle is returned as is."""
    from gpu_simulate_test.modeling import device_sync

    bid = bundle_id(cfg)
    final = Path(cfg.paths.profiling) / bid
    if final.exists() and not cfg.overwrite:
        root = pr.load_profiling_root(final)
        log.info("bundle %s exists already: reusing it (overwrite=true rebuilds it)", final)
        from gpu_simulate_test.io.tables import read_table

        return BundleResult(final, True, read_table(root.held_out_csv, HELD_OUT_CHECK), bundle_verdict(root.meta))
    grid = _checked_grid(cfg)
    parsed = _wanted_shapes(cfg)
    timer = StepTimer(cfg.backend, [s for s, _ in parsed], cfg.profile.iteration_samples)
    measure_host = "head" in cfg.profile.variants
    graphs = cfg.hardware.device == "cuda" and cfg.backend.cuda_graph_batch_sizes  # the engine captures graphs
    graph_tokens = cfg.backend.cuda_graph_token_sizes if graphs else []
    host_shapes = host_grid(grid, timer, graph_tokens, [s.num_tokens for s, _ in parsed],
                            cfg.backend.cuda_graph_batch_sizes if graphs else []) if measure_host else []
    timer = StepTimer(cfg.backend, [s for s, _ in parsed] + host_shapes, cfg.profile.iteration_samples)
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend.check_workload(timer.plan())  # every request the shapes submit, checked before anything loads
    method = TimingMethod(cfg.profile.warmup_iters, cfg.profile.repeat_iters, cfg.profile.calls_per_repeat)
    t_start = time.monotonic()
    with device_lock(device_key(cfg.hardware), cfg.device_lock_timeout_s, f"vidur-profile {bid}"), \
            atomic_dir(final, overwrite=cfg.overwrite) as out:
        try:
            weights_source = _load(backend)
            probe = BusyProbe(measured_gpu(cfg.hardware)).start()
            with QuietProgress() as progress:
                # The engine's whole steps first, on the engine as loaded, as a run meets it: timed after the
                # operators, its steps came out slower than a run's (STEP_TIMING)
                iters, skipped, host_record, idle_record = _measure_iterations(
                    backend, timer, parsed, cfg.profile.iteration_rounds, progress, host_shapes, host_share=measure_host)
                ops = _operator_source(backend, cfg)
                keys = row_keys_record(cfg, ops.prefill_wave(), ops.graph_buckets()) \
                    if hasattr(ops, "prefill_wave") else row_keys_record(cfg)
                mlp, att = _measure_operators(ops, grid, cfg, method, device_sync(ops.device), progress)
                head = _measure_head(ops, grid, method, device_sync(ops.device), progress) \
                    if "head" in cfg.profile.variants else None
            host_load = probe.stop()
        finally:
            backend.close()
        measured = Measured(mlp, att, iters, skipped, keys, head, host_record,
                            method.describe() + (f"; native operators: {OPERATOR_TIMING}"
                                                 if cfg.backend.name == "native" else ""),
                            weights_source, backend.sdpa_kernels, host_load.to_dict(), idle_record=idle_record)
        check, verdict = _derive(cfg, bid, grid, measured, predict, out, t_start)
    log.log(logging.INFO if verdict.accepted else logging.WARNING, "bundle %s: verdict %s", bid, verdict.line())
    return BundleResult(final, False, check, verdict)
