"""A bundle's variants (how its operator rows become a step time) and the validation that chooses among them.

- ``operators``: the operator rows as measured, nothing added: Vidur's operator model alone.
- ``step``: the same rows plus the whole-step correction (``vidur_ext/step_correction.py``), fitted on the fit shapes
  with its share of the predicted step of every shape the bundle checks (fit, validation, test: the latter two by
  their operators' predictions only) capped at ``profile.correction_cap_pct``.
- ``head``: the same rows plus the step's work outside its layers (embeddings, final norm, LM head, argmax, the
  block-table gather and decode work table), **measured** on the engine (``EngineLayerOps.outside_layers``) at the
  grid's token counts and carried by the step's requests (the rows it samples; ``head_term``:
  ``step_correction.OutsideLayers``, interpolated), and (bundles built since 2026-12-02) the host's share of a step,
  **measured** as its wall time less the device's (``host_share.py``) on steps at every request count of the grid
  (``bundle.host_grid``), packed ahead and packed at their start (``host_share_term``: ``step_correction.HostTerm``),
  and (since 2026-12-03) what a step no CUDA graph holds costs beyond all that, measured on eager prefills of the
  grid (``eager_term``): no fit, validation or test shape's time enters any of them. The native backend only.
- Both ``step`` and ``head`` (native bundles built since 2026-12-03) first add what the engine's own step graph of a
  decode batch costs beyond its parts, **measured** on the grid's decodes (``decode_graph_term``), and (since
  2026-12-04) that of a batch with a prompt chunk, **measured** on the grid's first chunks (``chunk_graph_term``):
  the step correction is fitted on what is left of the fit shapes after them.
- ``fold``: the rows scaled and the missing costs folded into them (``fold.py``): what bundles were before issue 16;
  its correction has no cap (host-bound engines need most of their step from it).

Each variant is fitted on the fit shapes only; ``profile.validation`` shapes choose the one with the lowest median
|error| (ties: the first listed in ``profile.variants``); the test shapes are predicted by the chosen bundle only,
after the choice, and never used to choose (``specs/profiling_root.md``, "Shape sets").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.profiler.baselines import abs_error_stats, signed_errors_pct
from gpu_simulate_test.vidur_ext.profiler.fold import least_abs, vidur_tokens
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.step_correction import (
    ChunkGraph,
    DecodeGraph,
    HostTerm,
    OutsideLayers,
    RequestCurve,
    RowKeys,
    StepCorrection,
    TokenCurve,
)

VARIANTS = ("operators", "step", "head", "fold")


def tokens_8(shape: BatchShape) -> int:
    """The step's tokens as Vidur looks its token rows up: rounded up to a multiple of 8."""
    return vidur_tokens(shape.num_tokens)


def first_chunks(shape: BatchShape) -> int:
    """The requests whose first prompt chunk the step runs (the engine admits each in it): a prefill with nothing
    cached before it."""
    return int(shape.prefill_tokens > 1 and shape.prefill_kv == 0)


def packed_at_start(shape: BatchShape) -> bool:
    """Whether the engine packs the profiler's steps of ``shape`` at their start: a first chunk (``StepTimer`` submits
    its prompt to an idle engine, or while decodes run, and the engine packs the step that admits it again); every
    other step is packed ahead, while the step before it runs. ``StepProbe`` records how each was packed, and the
    build checks the two agree (``host_share_term``)."""
    return first_chunks(shape) > 0


def check_variants(names: list[str]) -> list[str]:
    """``profile.variants``, checked: known names, none twice, at least one."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names or len(set(names)) != len(names):
        raise InputError(f"profile.variants={list(names)}: list one or more of {list(VARIANTS)}, each once")
    return list(names)


def fit_step_correction(shapes: list[BatchShape], measured_ms: list[float], raw_ms: list[float],
                        cap_pct: float, also_capped: Sequence[tuple[BatchShape, float]] = ()) -> StepCorrection:
    """``c_iter + c_token * tokens_8 + c_first * first_chunks`` (either sign) minimising the sum of |relative error| of ``raw + correction``
    over the fit shapes, with the correction at most ``cap_pct`` of the predicted step of each fit shape and of each
    ``also_capped`` shape (``(shape, its operators' prediction)``: the bundle's validation and test shapes, whose
    measured times the fit never sees; the verdict holds the share on all of them). A linear program; a correction of
    0 always satisfies the cap."""
    if not shapes:
        raise InputError("profile.fit lists no shape this backend can run; the step correction needs fit shapes")
    if not 0 < cap_pct < 100:
        raise InputError(f"profile.correction_cap_pct={cap_pct}: it must be in (0, 100)")
    y = np.asarray(measured_ms, dtype=float)
    raw = np.asarray(raw_ms, dtype=float)
    if not (np.all(np.isfinite(y)) and np.all(y > 0) and np.all(np.isfinite(raw)) and np.all(raw >= 0)):
        raise InputError(f"fit iterations need positive measured times and finite Vidur predictions; got {y.tolist()} / {raw.tolist()}")
    f = np.array([[1.0, float(tokens_8(s)), float(first_chunks(s))] for s in shapes])
    capped_f = np.array([[1.0, float(tokens_8(s)), float(first_chunks(s))] for s, _ in also_capped]).reshape(-1, 3)
    capped_raw = np.array([r for _, r in also_capped], dtype=float)
    if not np.all(np.isfinite(capped_raw) & (capped_raw >= 0)):
        raise InputError(f"the capped shapes need finite Vidur predictions; got {capped_raw.tolist()}")
    cap = cap_pct / 100.0
    # |corr| <= cap * (raw + corr):  (1 - cap) corr <= cap raw  and  -(1 + cap) corr <= cap raw
    cf, craw = np.vstack([f, capped_f]), np.concatenate([raw, capped_raw])
    a_ub = np.vstack([(1 - cap) * cf, -(1 + cap) * cf])
    b_ub = np.concatenate([cap * craw, cap * craw])
    try:
        c_iter, c_token, c_first = least_abs(f / y[:, None], (y - raw) / y, bounds=(None, None), a_ub=a_ub, b_ub=b_ub)
    except ValueError as exc:
        raise InputError(f"the step correction of the fit shapes {[str(s) for s in shapes]} has no solution: {exc}") from exc
    return StepCorrection(float(c_iter), float(c_token), float(c_first))


def _medians(points: Iterable[tuple[Any, Any]], floor: Optional[float] = None) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A measured curve from ``(count, ms)`` points: the counts in order, the median time at each (at least
    ``floor``)."""
    by_count: dict[int, list[float]] = {}
    for n, t in points:
        by_count.setdefault(int(n), []).append(float(t))
    keys = sorted(by_count)
    medians = [float(np.median(by_count[n])) for n in keys]
    return tuple(keys), tuple(medians if floor is None else [max(m, floor) for m in medians])


def _residuals(rows: Sequence[tuple[int, float]], predicted_ms: Sequence[float], term: str, key: str,
               floor: Optional[float] = None) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A measured term from grid steps: each step's measured time (``rows``: its count and ms) less the bundle's
    prediction of it without the term (one a step), the median at each count (``_medians``)."""
    if len(rows) != len(predicted_ms):
        raise InputError(f"the {term} needs one prediction a step it is measured on: {len(rows)} steps, "
                         f"{len(predicted_ms)} predictions")
    for (count, measured), pred in zip(rows, predicted_ms):
        if not (np.isfinite(measured) and np.isfinite(pred)):
            raise InputError(f"the {term} needs finite times; got {measured} measured, {pred} predicted at {count} {key}")
    return _medians(((n, t - float(p)) for (n, t), p in zip(rows, predicted_ms)), floor=floor)


def head_term(timing: dict[str, list]) -> OutsideLayers:
    """The ``head`` variant's term from ``head_timing`` (the work outside the layers at each token point, with the
    rows it sampled): the median time at each row count, the step's requests being the rows it samples."""
    rows, ms = list(timing.get("rows", [])), list(timing.get("ms", []))
    if not rows or len(rows) != len(ms) or not all(np.isfinite(ms)) or min(ms) < 0 or min(rows) < 1:
        raise InputError(f"the head term needs one non-negative time a row count >= 1; got {rows} / {ms}")
    return OutsideLayers(*_medians(zip(rows, ms)))


def host_share_term(record: dict[str, list]) -> tuple[HostTerm, dict[str, Any]]:
    """The ``head`` variant's host term from the host grid's record (``bundle.host_grid``: per shape its requests,
    whether the rule packs it at its start, :func:`packed_at_start`, the share of its steps the engine did, and its
    host share): for the shapes packed ahead and those packed at their start, the median share at each request count.
    Also the record ``profile_meta.json`` keeps (``host_timing``: the grid's record and the shapes the engine packed
    otherwise than the rule says)."""
    names = list(record.get("shape", []))
    fields = ("requests", "at_start", "packed_at_start", "host_ms")
    if not names or any(len(record.get(f, [])) != len(names) for f in fields) \
            or not all(np.isfinite(t) for t in record["host_ms"]):
        raise InputError("the head variant's host term needs the host's share measured on the request grid (native "
                         f"engine); got {dict(record)}")
    eager = record.get("eager", [False] * len(names))  # steps no graph holds: ``eager_term``'s, not these curves'
    rows = [(bool(a), n, ms) for n, a, ms, no_graph in zip(record["requests"], record["at_start"], record["host_ms"], eager)
            if not no_graph]
    ahead, serial = ([(n, ms) for a, n, ms in rows if a is kind] for kind in (False, True))
    if not ahead or not serial:
        raise InputError("the head variant's host term needs steps packed ahead (decodes) and at their start (first "
                         "chunks) on the request grid; the backend ran only one kind")
    otherwise = [s for s, a, share in zip(names, record["at_start"], record["packed_at_start"])
                 if abs(float(share) - float(a)) > 0.5]
    return (HostTerm(RequestCurve(*_medians(ahead, floor=0.0)), RequestCurve(*_medians(serial, floor=0.0))),
            {**record, "packed_otherwise": otherwise})


def eager_term(record: dict[str, list], predicted_ms: Sequence[float]) -> Optional[TokenCurve]:
    """The host term's ``eager`` curve from the host grid's record: for its steps that no CUDA graph holds (``eager``),
    their measured wall time (``wall_ms``) less what the head variant predicts of them without it (``predicted_ms``,
    one a such step in the record's order: the operators, the work outside the layers and the host's share), the
    median at each token count, held at >= 0; None when the grid has no such step."""
    rows = [(int(t), float(w)) for t, w, e in zip(record.get("tokens", []), record.get("wall_ms", []),
                                                  record.get("eager", [])) if e]
    points = _residuals(rows, predicted_ms, "eager term", "tokens", floor=0.0)
    return TokenCurve(*points) if rows else None


def decode_graph_term(record: dict[str, list], graph_seqs: Sequence[Optional[int]], predicted_ms: Sequence[float]
                      ) -> Optional[DecodeGraph]:
    """The ``decode_graph`` term from the host grid's record: for its decode steps a CUDA graph runs (``graph_seqs``,
    one a grid step: the graph's sequences, None for every other step), their device time (``wall_ms`` less
    ``host_ms``) less what the bundle predicts of them without it (``predicted_ms``, one a such step in the record's
    order: the operators as read and the work outside the layers), the median at each count of decodes, with the
    graph that ran it; None when the grid has no such step."""
    steps = [(int(n), int(g), float(w) - float(h)) for n, g, w, h in zip(record.get("requests", []), graph_seqs,
                                                                        record.get("wall_ms", []), record.get("host_ms", []))
             if g is not None]
    graph_of = {n: g for n, g, _ in steps}
    if any(graph_of[n] != g for n, g, _ in steps):
        raise InputError("the decode graph term needs one graph a count of decodes; the grid ran one count in two")
    points = _residuals([(n, t) for n, _, t in steps], predicted_ms, "decode graph term", "decodes")
    return DecodeGraph(*points, tuple(graph_of[n] for n in points[0])) if steps else None


def chunk_graph_term(record: dict[str, list], graph_tokens: Sequence[Optional[int]], predicted_ms: Sequence[float]
                     ) -> Optional[ChunkGraph]:
    """The ``chunk_graph`` term from the host grid's record: for its steps with a prompt chunk that a CUDA graph runs
    (``graph_tokens``, one a grid step: the tokens of the graph that runs it, None for a step no graph holds), their
    device time (``wall_ms`` less ``host_ms``) less what the bundle predicts of them without it (``predicted_ms``, one
    a such step in the record's order: the operators as read and the work outside the layers), the median at each
    count of requests, with the largest graph they ran in; None when the grid has no such step."""
    steps = [(int(n), float(w) - float(h), int(t)) for s, n, w, h, t in zip(
        record.get("shape", []), record.get("requests", []), record.get("wall_ms", []), record.get("host_ms", []),
        graph_tokens) if t is not None and not str(s).startswith("decode:")]
    points = _residuals([(n, ms) for n, ms, _ in steps], predicted_ms, "chunk graph term", "requests")
    return ChunkGraph(*points, max_graph_tokens=max(t for _, _, t in steps)) if steps else None


def with_graph(term: Optional[DecodeGraph], shapes: list[BatchShape], raw_ms: np.ndarray, keys: RowKeys,
               chunk: Optional[ChunkGraph] = None) -> np.ndarray:
    """The operators plus the step graphs' terms (``decode_graph_term``, ``chunk_graph_term``), exactly as vidur-sim
    adds them; the operators alone without any."""
    raw = np.asarray(raw_ms, dtype=float)
    if term is None and chunk is None:
        return raw
    added = []
    for s in shapes:
        graph, decode_only = keys.graph(s.num_tokens, s.batch_size, s.kind == "decode"), s.kind == "decode"
        added.append((0.0 if term is None else term.at_step(graph, decode_only, s.batch_size))
                     + (0.0 if chunk is None else chunk.at_step(graph, decode_only, s.batch_size)))
    return raw + np.array(added)


def with_outside(term: OutsideLayers, shapes: list[BatchShape], raw_ms: np.ndarray,
                 keys: RowKeys = RowKeys(), host: Optional[HostTerm] = None) -> np.ndarray:
    """What the bundle predicts with the head term: exactly what vidur-sim adds to each step (at its requests, or at
    the sequences of the graph that runs it where ``keys`` reads token rows at the step's graph), and the host's
    share at its requests as the profiler's steps of it were packed, and for a step no graph holds the eager term at
    its tokens."""
    graphs = [keys.graph(s.num_tokens, s.batch_size, s.kind == "decode") for s in shapes]
    return np.asarray(raw_ms, dtype=float) + np.array(
        [term.at_step(s.batch_size, g) + (0.0 if host is None else host.at(s.batch_size, packed_at_start(s))
                                          + host.eager_at(s.num_tokens, g)) for s, g in zip(shapes, graphs)])


def with_step(correction: StepCorrection, shapes: list[BatchShape], raw_ms: np.ndarray) -> np.ndarray:
    """What the bundle predicts with the correction applied: exactly what vidur-sim adds to each step."""
    return np.asarray(raw_ms, dtype=float) + np.array([correction.ms(tokens_8(s), first_chunks(s)) for s in shapes])


def share_pct(predicted_ms: np.ndarray, raw_ms: np.ndarray) -> np.ndarray:
    """How much of each predicted step is correction rather than operators: 100 |predicted - operators| / predicted."""
    predicted = np.asarray(predicted_ms, dtype=float)
    return 100.0 * np.abs(predicted - np.asarray(raw_ms, dtype=float)) / predicted


@dataclass(frozen=True)
class Candidate:
    """One variant fitted on the fit shapes, with what it predicts for the validation shapes."""

    name: str
    validation_ms: np.ndarray
    step: Optional[StepCorrection] = None
    outside: Optional[OutsideLayers] = None
    host: Optional[HostTerm] = None
    graph: Optional[DecodeGraph] = None
    chunk: Optional[ChunkGraph] = None


def choose(candidates: list[Candidate], names: list[str], measured_ms: np.ndarray) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """The variant with the lowest median |error| on the validation shapes (``names`` as configured; the first variant
    when there are none), the per-shape table (``validation_check.csv``) and the record for ``profile_meta.json``
    ``validation_check``."""
    rows, per_variant = [], {}
    for c in candidates:
        err = signed_errors_pct(c.validation_ms, measured_ms)
        med, p90 = abs_error_stats(err)
        per_variant[c.name] = {"median_abs_error_pct": med, "p90_abs_error_pct": p90}
        rows.append(pd.DataFrame({"shape": list(names), "variant": c.name,
                                  "measured_ns": np.rint(measured_ms * 1e6).astype(np.int64),
                                  "predicted_ns": np.rint(c.validation_ms * 1e6).astype(np.int64), "error_pct": err}))
    if names:
        chosen = min(candidates, key=lambda c: per_variant[c.name]["median_abs_error_pct"]).name  # min keeps the first of ties
        rule = "lowest median |error| on the validation shapes (ties: the first in profile.variants)"
    else:
        chosen, rule = candidates[0].name, "no validation shape: the first in profile.variants"
    record = {"num_shapes": len(names), "candidates": [c.name for c in candidates], "chosen": chosen, "rule": rule,
              "variants": per_variant}
    return chosen, pd.concat(rows, ignore_index=True), record
