"""workload-spec: turn a workload config and a seed into a content-addressed workload directory.

Pipeline: a length source (synthetic distribution or importer) gives candidate requests; they are
selected (first ones or a seeded subsample), tokenized (text sources only) or given synthetic prompt ids drawn
from the model's own vocabulary (no tokenizer), checked
against the model's context, given arrival times, and written with a ``workload_id`` that hashes
the canonical config (with seed and context limit) and the data files. See ``specs/workload.md``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from rich.progress import Progress

from gpu_simulate_test.config.apps import WorkloadSpecAppConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.workload import WorkloadConfig
from gpu_simulate_test.errors import InputError, OutputExistsError
from gpu_simulate_test.io.ids import canonical_json, file_sha256, is_valid_id, short_hash, without_defaults
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import WORKLOAD_META, atomic_dir
from gpu_simulate_test.io.schemas import TRACE_INTERVALS, TRACE_LENGTHS
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.io.units import NS_PER_S
from gpu_simulate_test.workloads.arrivals import arrival_times, phase_counts
from gpu_simulate_test.workloads.importers import DRAW, IMPORTERS, RawTrace
from gpu_simulate_test.workloads.lengths import LENGTH_SAMPLERS, check_bounds, sample_lengths
from gpu_simulate_test.workloads.load import PROMPTS
from gpu_simulate_test.workloads.tokenizer import PromptTokenizer, load_tokenizer

log = logging.getLogger(__name__)

DATA_FILES = (TRACE_LENGTHS.filename, TRACE_INTERVALS.filename, PROMPTS)

# Independent random streams, so that e.g. changing the arrival process leaves the lengths alone.
STREAM_PREFILL, STREAM_DECODE, STREAM_ARRIVALS, STREAM_SUBSAMPLE, STREAM_TOKENS = 1, 2, 3, 4, 5
_CHUNK = 1024


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


@dataclass
class Built:
    """The selected requests, in arrival order, ready to be written."""

    prefill: np.ndarray
    decode: np.ndarray
    arrivals_ns: np.ndarray
    prompt_ids: list[list[int]]
    texts: list[Optional[str]]
    candidates: int
    dropped_over_context: int
    clipped: int


# --- sources -------------------------------------------------------------------------------------------


def _requests_wanted(w: WorkloadConfig) -> Optional[int]:
    """How many requests the workload asks for: the phases' total, else ``num_requests`` (null: a whole trace)."""
    if not w.arrival.phases:
        return w.num_requests
    total = sum(phase_counts(w.arrival))
    if w.num_requests is not None and int(w.num_requests) != total:
        raise InputError(f"workload.num_requests={w.num_requests} but workload.arrival.phases hold {total} requests "
                         "(round(qps x duration_s) each); set workload.num_requests=null")
    return total


def _phases_meta(w: WorkloadConfig) -> list[dict[str, Any]]:
    """Each phase's rate, span and request ids (requests are numbered in arrival order), for compare-runs."""
    out, first, start = [], 0, 0.0
    for i, (p, count) in enumerate(zip(w.arrival.phases, phase_counts(w.arrival))):
        end = start + float(p.duration_s)
        out.append({"phase": i, "qps": float(p.qps), "duration_s": float(p.duration_s),
                    "start_time_ns": int(round(start * NS_PER_S)), "end_time_ns": int(round(end * NS_PER_S)),
                    "first_request_id": first, "num_requests": count})
        first, start = first + count, end
    return out


def _synthetic(w: WorkloadConfig, seed: int) -> RawTrace:
    n = _requests_wanted(w)
    if n is None or n < 1:
        raise InputError(f"workload.num_requests={n}: a synthetic source ({w.lengths.source}) needs a count >= 1")
    src = w.lengths.source
    return RawTrace(
        source="synthetic", unit="request", where=np.arange(n, dtype=np.int64),
        prefill=sample_lengths(src, w.lengths.prefill, _rng(seed, STREAM_PREFILL), n, "prefill"),
        decode=sample_lengths(src, w.lengths.decode, _rng(seed, STREAM_DECODE), n, "decode"),
    )


def _read_source(w: WorkloadConfig, seed: int) -> RawTrace:
    """The candidate requests of the configured source; trace decode lengths it lacks are drawn here."""
    src = w.lengths.source
    if src in LENGTH_SAMPLERS:
        return _synthetic(w, seed)
    if src not in IMPORTERS:
        raise InputError(
            f"workload.lengths.source={src!r} is unknown; choose a distribution {sorted(LENGTH_SAMPLERS)} "
            f"or an importer {sorted(IMPORTERS)}"
        )
    if not w.lengths.path:
        raise InputError(f"workload.lengths.source={src} reads a file: set workload.lengths.path")
    raw = IMPORTERS[src](Path(w.lengths.path))
    missing = raw.decode == DRAW
    if missing.any() and raw.decode_texts is None:
        if w.lengths.decode_dist not in LENGTH_SAMPLERS:
            raise InputError(
                f"workload.lengths.decode_dist={w.lengths.decode_dist!r} is unknown; choose one of {sorted(LENGTH_SAMPLERS)}"
            )
        draws = sample_lengths(w.lengths.decode_dist, w.lengths.decode, _rng(seed, STREAM_DECODE), len(raw), "decode")
        raw.decode = np.where(missing, draws, raw.decode)
    return raw


# --- prompts -------------------------------------------------------------------------------------------


def synthetic_id_range(model: ModelConfig) -> tuple[int, int]:
    """``[first, end)`` of the ids that prompts without text are drawn from: the model's plain vocabulary
    (``model.ordinary_id_range``, else all of ``vocab_size``), so no tokenizer is needed."""
    first, end = model.ordinary_id_range if model.ordinary_id_range is not None else (0, model.vocab_size)
    if not 0 <= int(first) < int(end) <= int(model.vocab_size):
        raise InputError(
            f"model.ordinary_id_range={list(model.ordinary_id_range or [])} must be [first, end) with "
            f"0 <= first < end <= vocab_size ({model.vocab_size})"
        )
    return int(first), int(end)


class _Synth:
    """Deterministic synthetic prompt ids drawn uniformly from ``[first, end)`` (:func:`synthetic_id_range`)."""

    def __init__(self, id_range: tuple[int, int], seed: int) -> None:
        self.pool = np.arange(*id_range, dtype=np.int64)
        self.rng = _rng(seed, STREAM_TOKENS)

    def ids(self, lengths: np.ndarray) -> list[list[int]]:
        flat = self.pool[self.rng.integers(0, len(self.pool), size=int(lengths.sum()))]
        return [a.tolist() for a in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []


def _fit_text(ids: list[int], text: str, target: int, tok: PromptTokenizer, synth: _Synth) -> tuple[list[int], Optional[str]]:
    """Truncate or pad ``ids`` to ``target``; the text survives only if it still encodes to exactly those ids."""
    if len(ids) == target:
        return ids, text
    if len(ids) > target:
        cut = ids[:target]
        decoded = tok.decode(cut)
        return cut, decoded if tok.encode_batch([decoded])[0] == cut else None
    return ids + synth.ids(np.array([target - len(ids)]))[0], None


def _materialize(
    raw: RawTrace, idx: np.ndarray, w: WorkloadConfig, tok: Optional[PromptTokenizer], synth: _Synth
) -> tuple[np.ndarray, np.ndarray, list[list[int]], list[Optional[str]], int]:
    """Prompt ids, texts and both lengths of candidates ``idx`` (tokenizing only these); and how many were clipped.
    ``tok`` is None exactly when the source has no text."""
    clip = w.lengths.clip_imported and raw.source != "synthetic"
    if clip:
        check_bounds(w.lengths.prefill, "prefill")
        check_bounds(w.lengths.decode, "decode")
    decode = raw.decode[idx].copy()
    if raw.decode_texts is not None:
        assert tok is not None
        decode = np.array([len(x) for x in tok.encode_batch([raw.decode_texts[i] for i in idx])], dtype=np.int64)
    if raw.texts is not None:
        assert tok is not None
        enc = tok.encode_batch([raw.texts[i] for i in idx])
        prefill = np.array([len(x) for x in enc], dtype=np.int64)
        texts: list[Optional[str]] = [raw.texts[i] for i in idx]
        if clip:
            target = np.clip(prefill, w.lengths.prefill.min, w.lengths.prefill.max)
            fitted = [_fit_text(ids, t or "", int(n), tok, synth) for ids, t, n in zip(enc, texts, target)]
            enc, texts = [f[0] for f in fitted], [f[1] for f in fitted]
            clipped = int((target != prefill).sum())
            prefill = target
        else:
            clipped = 0
    else:
        assert raw.prefill is not None
        prefill = raw.prefill[idx]
        clipped = 0
        if clip:
            target = np.clip(prefill, w.lengths.prefill.min, w.lengths.prefill.max)
            clipped, prefill = int((target != prefill).sum()), target
        enc, texts = synth.ids(prefill), [None] * len(idx)
    if clip:
        dec = np.clip(decode, w.lengths.decode.min, w.lengths.decode.max)
        clipped += int((dec != decode).sum())
        decode = dec
    return prefill, decode, enc, texts, clipped


def _select(raw: RawTrace, w: WorkloadConfig, seed: int, max_context: int, tok: Optional[PromptTokenizer],
            id_range: tuple[int, int]) -> Built:
    """Walk the candidates (in file order or a seeded permutation) until ``num_requests`` fit the context."""
    n = len(raw)
    wanted = _requests_wanted(w)
    cap = n if wanted is None else int(wanted)
    if cap < 1:
        raise InputError(f"workload.num_requests={cap} must be >= 1 (or null for the whole trace)")
    order = _rng(seed, STREAM_SUBSAMPLE).permutation(n) if w.subsample and raw.source != "synthetic" else np.arange(n)
    synth = _Synth(id_range, seed)
    keep_idx: list[np.ndarray] = []
    parts: list[tuple[np.ndarray, np.ndarray, list[list[int]], list[Optional[str]]]] = []
    have = dropped = clipped = pos = 0
    with Progress(transient=True, disable=min(cap, n) < 5000) as bar:
        task = bar.add_task("building prompts", total=min(cap, n))
        while have < cap and pos < n:
            idx = order[pos : pos + max(_CHUNK, 2 * (cap - have))]
            pos += len(idx)
            prefill, decode, enc, texts, nclip = _materialize(raw, idx, w, tok, synth)
            over = prefill + decode > max_context
            if over[: cap - have].any() and not w.drop_over_context:
                i = int(np.argmax(over))
                raise InputError(
                    f"{raw.locate(int(idx[i]))}: the request needs {prefill[i]} prompt + {decode[i]} decode = "
                    f"{prefill[i] + decode[i]} tokens, more than the context limit {max_context}; set "
                    "workload.drop_over_context=true to drop such requests, or lower the lengths"
                )
            ok = np.flatnonzero(~over)[: cap - have]
            dropped += int(over[: ok[-1] + 1 if len(ok) == cap - have else len(over)].sum())
            clipped += nclip
            keep_idx.append(idx[ok])
            parts.append((prefill[ok], decode[ok], [enc[j] for j in ok], [texts[j] for j in ok]))
            have += len(ok)
            bar.update(task, completed=have)
    if have == 0:
        raise InputError(
            f"{raw.source}: all {n} requests exceed the context limit {max_context} and were dropped; "
            "raise workload.max_context or use shorter requests"
        )
    kept = np.concatenate(keep_idx)
    order_back = np.argsort(kept, kind="stable")  # a subsample keeps the trace's own order
    prefill = np.concatenate([p[0] for p in parts])[order_back]
    decode = np.concatenate([p[1] for p in parts])[order_back]
    ids = [x for p in parts for x in p[2]]
    texts = [x for p in parts for x in p[3]]
    ts = raw.timestamps_ns[kept[order_back]] if raw.timestamps_ns is not None else None
    arrivals = arrival_times(w.arrival, len(kept), _rng(seed, STREAM_ARRIVALS), ts)
    return Built(
        prefill=prefill, decode=decode, arrivals_ns=arrivals,
        prompt_ids=[ids[j] for j in order_back], texts=[texts[j] for j in order_back],
        candidates=n, dropped_over_context=dropped, clipped=clipped,
    )


# --- writing -------------------------------------------------------------------------------------------


def _write_data(b: Built, out: Path) -> None:
    m = len(b.prefill)
    rid = np.arange(m, dtype=np.int64)
    write_table(pd.DataFrame({"request_id": rid, "num_prefill_tokens": b.prefill, "num_decode_tokens": b.decode}),
                out / TRACE_LENGTHS.filename, TRACE_LENGTHS)
    gaps = np.diff(b.arrivals_ns, prepend=b.arrivals_ns[:1])
    write_table(pd.DataFrame({"request_id": rid, "arrival_time_ns": b.arrivals_ns, "inter_arrival_ns": gaps}),
                out / TRACE_INTERVALS.filename, TRACE_INTERVALS)
    with open(out / PROMPTS, "w", encoding="ascii", newline="\n") as fh:
        for i, (ids, text) in enumerate(zip(b.prompt_ids, b.texts)):
            obj: dict[str, Any] = {"request_id": i, "prompt_token_ids": ids}
            if text is not None:
                obj["prompt"] = text
            fh.write(json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n")


def _dist(x: np.ndarray) -> dict[str, float | int]:
    return {
        "min": int(x.min()), "mean": round(float(x.mean()), 3), "p50": float(np.percentile(x, 50)),
        "p90": float(np.percentile(x, 90)), "max": int(x.max()), "total": int(x.sum()),
    }


def _stats(b: Built) -> dict[str, Any]:
    m = len(b.prefill)
    duration_s = float(b.arrivals_ns[-1]) / NS_PER_S
    return {
        "num_requests": m,
        "prefill_tokens": _dist(b.prefill),
        "decode_tokens": _dist(b.decode),
        "max_context_used": int((b.prefill + b.decode).max()),
        "duration_s": duration_s,
        "effective_qps": (m - 1) / duration_s if duration_s > 0 else None,
        "prompts_with_text": sum(t is not None for t in b.texts),
    }


def _same_files(a: Path, b: Path) -> bool:
    return all((a / f).is_file() and file_sha256(a / f) == file_sha256(b / f) for f in DATA_FILES) and (a / WORKLOAD_META).is_file()


def context_limit(w: WorkloadConfig, model: ModelConfig) -> int:
    """The most tokens (prompt + decode) a request of ``w`` may hold: ``workload.max_context``, at most the model's."""
    if w.max_context is None:
        return int(model.max_position_embeddings)
    if not 0 < int(w.max_context) <= int(model.max_position_embeddings):
        raise InputError(
            f"workload.max_context={w.max_context} must be in 1..{model.max_position_embeddings}, the context of model "
            f"{model.name} (max_position_embeddings); lower it or leave it null"
        )
    return int(w.max_context)


def generate_workload(app: WorkloadSpecAppConfig) -> Path:
    """Build the workload that ``app`` describes; return its directory.

    If a workload with the same id exists with identical files, nothing is rewritten; if its files
    differ (edited or corrupted), that is an error unless ``overwrite=true``.
    """
    w = app.workload
    seed = int(app.seed)
    if seed < 0:
        raise InputError(f"seed={seed} must be >= 0")
    if not is_valid_id(f"{w.name}-0"):
        raise InputError(f"workload.name={w.name!r}: use letters, digits, '.', '_' and '-' only (it starts the workload id)")
    max_context = context_limit(w, app.model)
    id_range = synthetic_id_range(app.model)
    raw = _read_source(w, seed)
    # Only text needs a tokenizer: a length-only source draws its prompt ids from the model's own vocabulary.
    has_text = raw.texts is not None or raw.decode_texts is not None
    tok = load_tokenizer(w.tokenizer, str(app.model.hf_id), int(app.model.vocab_size)) if has_text else None
    built = _select(raw, w, seed, max_context, tok, id_range)

    root = Path(app.paths.workloads)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        _write_data(built, staging)
        digests = {f: file_sha256(staging / f) for f in DATA_FILES}
        id_config = asdict(w)
        trace_sha = file_sha256(Path(w.lengths.path)) if raw.source != "synthetic" else None
        id_config["lengths"]["path"] = trace_sha  # the file's content, not where it lies on this machine
        # which tokenizer ran shows in the prompts' content; its name or local path would split ids for equal data
        del id_config["tokenizer"]
        id_basis = {"workload": without_defaults(id_config, WorkloadConfig), "seed": seed, "max_context": max_context}
        workload_id = f"{w.name}-{short_hash(canonical_json(id_basis), canonical_json(digests))}"
        final = root / workload_id
        if final.exists() and not app.overwrite:
            if _same_files(final, staging):
                log.info("workload %s exists at %s: identical, nothing rewritten", workload_id, final)
                return final
            raise OutputExistsError(
                f"{final} exists but its files differ from what this config generates (edited or corrupted?); "
                "pass overwrite=true to rewrite it"
            )
        with atomic_dir(final, overwrite=app.overwrite) as tmp:
            for f in DATA_FILES:
                (staging / f).rename(tmp / f)
            meta = build_meta(
                kind="workload", id=workload_id,
                config=asdict(app),
                inputs={"trace_file": {"path": str(w.lengths.path), "sha256": trace_sha}} if trace_sha else {},
                seed=seed, max_context=max_context,
                tokenizer=None if tok is None else {"kind": tok.kind, "name": tok.name},
                synthetic_id_range=list(id_range),
                stats=_stats(built),
                filters={"candidates": built.candidates, "dropped_over_context": built.dropped_over_context,
                         "clipped_lengths": built.clipped, **raw.notes},
                files=digests, id_basis=id_basis,
                **({"phases": _phases_meta(w)} if w.arrival.phases else {}),
            )
            write_json(tmp / WORKLOAD_META, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if built.dropped_over_context:
        log.info("dropped %d request(s) over the context limit %d", built.dropped_over_context, max_context)
    log.info("workload %s: %d requests written to %s", workload_id, len(built.prefill), final)
    return final
