"""compare-runs ``mode=import``: another benchmark tool's per-request results as a real run of a given workload.

    compare-runs mode=import import_format=<vllm|inference_perf|aiperf|requests_csv> import_file=<file> workload_id=<id>

One reader per tool (:data:`READERS`, field names as each tool writes them: ``specs/comparison.md``) turns its file
into :class:`ToolRecord` s, in the order the tool sent them; record ``i`` is the workload's ``i``-th request in
arrival order, unless the file names each request's workload ``request_id`` (``requests_csv``: per-request results
such as benchmark summaries and published ground truths give, TTFT and E2E without token times). From a record:

- arrival = its send time made relative to the earliest send, a failed request's included (else the workload's
  arrival time), dispatch = arrival;
- token times = arrival + the record's chunk times. When the record has one time per output token, every token
  has its own time; when it has fewer (chunks that carried several tokens, or only TTFT and latency), only the
  first and last token's times are kept (``token_indices`` 0 and n-1: nothing is interpolated), so TTFT, TPOT and
  E2E stay exact and ITL cannot be compared for that request (the meta says so); a one-token request's time is
  its first chunk's;
- a record with an error is a failed request (left out, counted); requests the file lacks are missing and make the
  run ``incomplete``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.meta import build_meta, read_meta
from gpu_simulate_test.io.outputs import RUN_META, stage_output
from gpu_simulate_test.io.runs import (
    RequestRecord,
    imported_already,
    tables_from_records,
    write_run_meta,
    write_run_tables,
)
from gpu_simulate_test.io.units import NS_PER_MS, NS_PER_S
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest, load_workload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolRecord:
    """One request as a tool recorded it; times in ns."""

    where: str  # e.g. "entry 3" or "line 5", for messages
    error: Optional[str]  # a failed request's error
    start_ns: Optional[int]  # when it was sent, on any clock
    input_tokens: Optional[int]  # None where the tool does not record it (requests_csv): not checked
    output_tokens: Optional[int]
    chunk_ns: Optional[np.ndarray]  # arrival of each chunk (or token) after the send; the first is the TTFT
    request_id: Optional[int] = None  # the workload's request id, where the file names it (else by position)


@dataclass(frozen=True)
class ToolFile:
    """What a reader got out of a file."""

    records: list[ToolRecord]
    tool: str  # how the file was made, for the meta
    model: Optional[str]
    settings: dict[str, Any]  # the tool's own run settings worth keeping


def _fail(path: Path, where: str, what: str) -> InputError:
    return InputError(f"{path}: {where}: {what}")


def _get(obj: Any, keys: str, path: Path, where: str, kinds: tuple[type, ...], required: bool = True) -> Any:
    """``obj[k1][k2]...`` for ``keys`` = "k1.k2..."; a missing or mistyped value is one error naming it."""
    cur = obj
    for key in keys.split("."):
        if not isinstance(cur, dict) or cur.get(key) is None:
            if not required:
                return None
            raise _fail(path, where, f"missing field {keys!r}")
        cur = cur[key]
    if isinstance(cur, bool) or not isinstance(cur, kinds):
        raise _fail(path, where, f"field {keys!r} is {cur!r}, not a {'/'.join(k.__name__ for k in kinds)}")
    return cur


def _ns(values: Any, scale: float) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64) * scale).astype(np.int64)


# --- readers -----------------------------------------------------------------------------------------------


VLLM_LISTS = ("ttfts", "itls", "input_lens", "output_lens")
VLLM_SCALARS = ("model_id", "backend", "request_rate", "date", "tokenizer_id", "max_concurrency", "burstiness")


def read_vllm(path: Path) -> ToolFile:
    """``vllm bench serve --save-result --save-detailed`` JSON: per-request lists ``ttfts`` (s), ``itls`` (s, one per
    chunk after the first), ``input_lens``, ``output_lens``, optional ``start_times`` (s) and ``errors``."""
    obj = _json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object (vllm bench serve --save-result --save-detailed)")
    missing = [k for k in VLLM_LISTS if k not in obj]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}; save the benchmark with --save-result --save-detailed "
                         f"(accepted keys: {', '.join(VLLM_LISTS)}, optional start_times, errors)")
    lists = {k: obj[k] for k in (*VLLM_LISTS, "start_times", "errors") if k in obj}
    n = len(obj["ttfts"]) if isinstance(obj["ttfts"], list) else -1
    for k, v in lists.items():
        if not isinstance(v, list) or len(v) != n:
            raise InputError(f"{path}: {k!r} must be a list as long as 'ttfts' ({n}); got {type(v).__name__} of length "
                             f"{len(v) if isinstance(v, list) else '-'}")
    records = []
    for i in range(n):
        error = lists["errors"][i] if "errors" in lists else None
        start = lists["start_times"][i] if "start_times" in lists else None
        if error:
            records.append(ToolRecord(f"request {i}", str(error), None, None, None, None))
            continue
        ttft, itls = lists["ttfts"][i], lists["itls"][i]
        if not isinstance(ttft, (int, float)) or not isinstance(itls, list):
            raise _fail(path, f"request {i}", f"ttfts is {ttft!r} and itls is {type(itls).__name__}: need a number and a list")
        chunks = np.concatenate(([ttft], ttft + np.cumsum(np.asarray(itls, dtype=np.float64))))
        records.append(ToolRecord(f"request {i}", None, None if start is None else int(_ns(start, NS_PER_S)),
                                  lists["input_lens"][i], lists["output_lens"][i], _ns(chunks, NS_PER_S)))
    return ToolFile(records, "vllm bench serve --save-detailed", obj.get("model_id"), {k: obj[k] for k in VLLM_SCALARS if k in obj})


def read_inference_perf(path: Path) -> ToolFile:
    """inference-perf's ``per_request_lifecycle_metrics.json``: a list of ``{start_time, end_time, request, response,
    info, error}`` (times in s of ``time.perf_counter``); ``info.response_metrics.output_token_times`` holds the
    arrival of each content chunk (or, once its report expanded them, of each token), ``info.response_metrics.
    output_tokens`` the output count, ``info.input_tokens`` the prompt's."""
    data = _json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of requests (inference-perf per_request_lifecycle_metrics.json)")
    entries = []
    for i, entry in enumerate(data):
        where = f"entry {i}"
        start = _get(entry, "start_time", path, where, (int, float))
        err = entry.get("error") if isinstance(entry, dict) else None
        if err:
            msg = f"{err.get('error_type', 'error')}: {err.get('error_msg', '')}" if isinstance(err, dict) else str(err)
            entries.append((start, ToolRecord(where, msg, None, None, None, None)))
            continue
        times = _get(entry, "info.response_metrics.output_token_times", path, where, (list,))
        if not times:
            raise _fail(path, where, "info.response_metrics.output_token_times is empty: the request was not streamed")
        usage = _get(entry, "info.response_metrics.server_usage", path, where, (dict,), required=False) or {}
        out = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else \
            _get(entry, "info.response_metrics.output_tokens", path, where, (int,))
        inp = _get(entry, "info.input_tokens", path, where, (int,), required=False)
        if inp is None:
            inp = _get(entry, "info.request_metrics.text.input_tokens", path, where, (int,))
        entries.append((start, ToolRecord(where, None, int(_ns(start, NS_PER_S)), inp, out,
                                          _ns(np.asarray(times, dtype=np.float64) - start, NS_PER_S))))
    entries.sort(key=lambda e: e[0])  # the file lists requests as they finished; send order is what aligns
    return ToolFile([r for _, r in entries], "inference-perf per_request_lifecycle_metrics.json", None, {})


AIPERF_UNITS = {"ns": 1.0, "us": 1e3, "ms": float(NS_PER_MS), "s": float(NS_PER_S), "sec": float(NS_PER_S)}


def _aiperf_time(metrics: dict[str, Any], name: str, path: Path, where: str, required: bool = True) -> Optional[np.ndarray]:
    m = metrics.get(name)
    if m is None:
        if required:
            raise _fail(path, where, f"missing metric {name!r}")
        return None
    unit = m.get("unit") if isinstance(m, dict) else None
    if unit not in AIPERF_UNITS or "value" not in m:
        raise _fail(path, where, f"metric {name!r} needs a value and a time unit {sorted(AIPERF_UNITS)}; got {m!r}")
    return np.asarray(m["value"], dtype=np.float64) * AIPERF_UNITS[unit]


def read_aiperf(path: Path) -> ToolFile:
    """AIPerf's ``profile_export.jsonl``: one ``{metadata, metrics, error}`` per line; ``metadata.session_num`` orders
    them, ``metadata.request_start_ns`` is the send time (wall clock), warm-up records are skipped. Metrics (values
    with units): ``time_to_first_token``, ``inter_chunk_latency`` (a list, one per chunk after the first; optional),
    ``request_latency``, ``input_sequence_length``, ``output_sequence_length``."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, where, f"not valid JSON ({exc.msg})") from exc
        if _get(obj, "metadata.benchmark_phase", path, where, (str,), required=False) == "warmup":
            continue
        num = _get(obj, "metadata.session_num", path, where, (int,))
        start = _get(obj, "metadata.request_start_ns", path, where, (int,))
        err = obj.get("error")
        if err:
            msg = (f"{err.get('code', '')} {err.get('type', '')}: {err.get('message', '')}".strip() if isinstance(err, dict)
                   else str(err))
            entries.append((num, ToolRecord(where, msg, None, None, None, None)))
            continue
        metrics = _get(obj, "metrics", path, where, (dict,))
        ttft = float(_aiperf_time(metrics, "time_to_first_token", path, where))
        icl = _aiperf_time(metrics, "inter_chunk_latency", path, where, required=False)
        if icl is not None:
            chunks = np.concatenate(([ttft], ttft + np.cumsum(np.atleast_1d(icl))))
        else:
            chunks = np.array([ttft, max(ttft, float(_aiperf_time(metrics, "request_latency", path, where)))])
        entries.append((num, ToolRecord(where, None, start, _get(metrics, "input_sequence_length.value", path, where, (int,)),
                                        _get(metrics, "output_sequence_length.value", path, where, (int,)),
                                        np.rint(chunks).astype(np.int64))))
    if not entries:
        raise InputError(f"{path}: no profiling record (AIPerf profile_export.jsonl, one JSON record per line)")
    entries.sort(key=lambda e: e[0])
    return ToolFile([r for _, r in entries], "AIPerf profile_export.jsonl", None, {})


REQUESTS_CSV_REQUIRED = ("request_id", "ttft_ms", "e2e_ms", "output_tokens")
REQUESTS_CSV_OPTIONAL = ("start_ms", "error")


def _whole(value: float, path: Path, where: str, column: str) -> int:
    if value != int(value):
        raise _fail(path, where, f"{column} is {value:g}, not a whole number")
    return int(value)


def read_requests_csv(path: Path) -> ToolFile:
    """Per-request results without token times, one CSV row per request: ``request_id`` (the workload's), ``ttft_ms``
    and ``e2e_ms`` (from the request's start), ``output_tokens``; optional ``start_ms`` (when the request was sent, on
    any clock) and ``error`` (non-empty: the request failed). A failed row needs only its ``request_id``."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype={"error": str}, keep_default_na=False,
                         na_values={c: [""] for c in (*REQUESTS_CSV_REQUIRED, "start_ms")})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc}); columns {list(REQUESTS_CSV_REQUIRED)} "
                         f"(optional {list(REQUESTS_CSV_OPTIONAL)})") from exc
    missing = [c for c in REQUESTS_CSV_REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{path}: line 1: missing column(s) {missing}; the header is {list(df.columns)}")
    failed = (df["error"].astype(str).str.strip() != "").to_numpy() if "error" in df.columns else np.zeros(len(df), bool)
    numbers = {}
    for col in (*REQUESTS_CSV_REQUIRED, *(["start_ms"] if "start_ms" in df.columns else [])):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        needed = ~failed if col in ("ttft_ms", "e2e_ms", "output_tokens") else np.ones(len(df), dtype=bool)
        bad = ~np.isfinite(values) & needed
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, f"line {i + 2}, column {col!r}", f"{df[col].iloc[i]!r} is not a number")
        numbers[col] = values
    records = []
    for i in range(len(df)):
        where = f"line {i + 2}"
        rid = _whole(numbers["request_id"][i], path, where, "request_id")
        start = int(np.rint(numbers["start_ms"][i] * NS_PER_MS)) if "start_ms" in numbers else None
        if failed[i]:
            records.append(ToolRecord(where, str(df["error"].iloc[i]).strip(), start, None, None, None, rid))
            continue
        ttft, e2e = numbers["ttft_ms"][i], numbers["e2e_ms"][i]
        if not 0 <= ttft <= e2e:
            raise _fail(path, where, f"need 0 <= ttft_ms <= e2e_ms, got ttft_ms={ttft:g}, e2e_ms={e2e:g}")
        records.append(ToolRecord(where, None, start, None, _whole(numbers["output_tokens"][i], path, where, "output_tokens"),
                                  _ns([ttft, e2e], NS_PER_MS), rid))
    return ToolFile(records, "per-request results (CSV)", None, {})


READERS: dict[str, Callable[[Path], ToolFile]] = {
    "vllm": read_vllm,
    "inference_perf": read_inference_perf,
    "aiperf": read_aiperf,
    "requests_csv": read_requests_csv,
}


def _json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc


# --- records -> run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    records: list[RequestRecord]
    failed: int
    missing: int
    partial: int  # requests with only their first and last token times
    arrival_source: str


def _workload_requests(path: Path, recs: list[ToolRecord], workload: Workload) -> list[WorkloadRequest]:
    """The workload request of each record: the one it names, else the one at its position."""
    if all(r.request_id is None for r in recs):
        if len(recs) > len(workload.requests):
            raise InputError(f"{path}: {len(recs)} requests but workload {workload.workload_id!r} has "
                             f"{len(workload.requests)}")
        return workload.requests[:len(recs)]
    by_id = {w.request_id: w for w in workload.requests}
    seen: set[int] = set()
    for rec in recs:
        if rec.request_id not in by_id:
            raise _fail(path, rec.where, f"request_id {rec.request_id} is not a request of workload {workload.workload_id!r}")
        if rec.request_id in seen:
            raise _fail(path, rec.where, f"request_id {rec.request_id} appears twice")
        seen.add(rec.request_id)
    return [by_id[r.request_id] for r in recs]  # type: ignore[index]


def to_run_records(path: Path, tool: ToolFile, workload: Workload) -> Imported:
    """The run's records from a tool's (see the module docstring); a record that does not fit the workload is an
    error naming it."""
    recs = tool.records
    matched = _workload_requests(path, recs, workload)
    starts = [r.start_ns for r in recs if r.error is None]
    origin = None
    if starts and all(s is not None for s in starts):  # the run starts at the first send, a failed request's too
        origin = min(r.start_ns for r in recs if r.start_ns is not None)
    out, failed, partial = [], 0, 0
    for rec, w in zip(recs, matched):
        where = f"{path}: {rec.where} (workload request_id {w.request_id})"
        if rec.error is not None:
            failed += 1
            continue
        if rec.input_tokens is not None and rec.input_tokens != w.num_prefill_tokens:
            raise InputError(f"{where}: the input length is {rec.input_tokens}, the workload's prompt has "
                             f"{w.num_prefill_tokens} tokens; is this the same workload, sent in arrival order?")
        n = rec.output_tokens
        if not isinstance(n, int) or not 1 <= n <= w.num_decode_tokens:
            raise InputError(f"{where}: the output length is {n!r}, expected 1..{w.num_decode_tokens} (the workload's decode length)")
        chunks = rec.chunk_ns
        if chunks is None or len(chunks) == 0 or chunks[0] < 0 or (np.diff(chunks) < 0).any():
            raise InputError(f"{where}: the time to first token must be >= 0 and later chunks must not come earlier")
        arrival = w.arrival_time_ns if origin is None else int(rec.start_ns - origin)  # type: ignore[operator]
        if len(chunks) == n:
            out.append(RequestRecord(w.request_id, arrival, arrival, w.num_prefill_tokens, w.num_decode_tokens,
                                     (arrival + chunks).tolist()))
        elif n == 1:  # its one token came with the first chunk: every token's time is known
            out.append(RequestRecord(w.request_id, arrival, arrival, w.num_prefill_tokens, w.num_decode_tokens,
                                     [arrival + int(chunks[0])]))
        else:
            partial += 1
            out.append(RequestRecord(w.request_id, arrival, arrival, w.num_prefill_tokens, w.num_decode_tokens,
                                     [arrival + int(chunks[0]), arrival + int(chunks[-1])], [0, n - 1]))
    if not out:
        raise InputError(f"{path}: no successful request to import")
    return Imported(out, failed, len(workload.requests) - len(recs), partial,
                    "the tool's send times" if origin is not None else "workload arrival times")


def import_run(app: CompareRunsAppConfig) -> Path:
    """Write ``<paths.real_runs>/<run_id>/`` from ``app.import_file`` (format ``app.import_format``)."""
    if app.import_format not in READERS:
        raise InputError(f"import_format={app.import_format!r} is not one of {sorted(READERS)}")
    if not app.import_file or not app.workload_id:
        raise InputError("mode=import needs import_file=<file> and workload_id=<id> (and import_format=<tool>)")
    path = Path(str(app.import_file))
    tool = READERS[app.import_format](path)
    workload = load_workload(Path(app.paths.workloads), str(app.workload_id))
    got = to_run_records(path, tool, workload)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run_id = str(app.run_id or f"{app.import_format}-{sha[:12]}-{workload.workload_id}"[:128])
    done = Path(app.paths.real_runs) / run_id
    if not app.overwrite and imported_already(done, "import_file", sha, workload.workload_id):
        log.info("%s: this file was imported for workload %s already, as %s; nothing rewritten", path,
                 workload.workload_id, done)
        return done
    out = stage_output(app.paths.real_runs, run_id, lambda: run_id, overwrite=bool(app.overwrite))
    config = {
        "model": {"name": str(tool.model or "?")},
        "backend": {"name": f"{app.import_format}-import"},
        "hardware": {"name": f"unknown ({app.import_format} import)"},
        app.import_format: tool.settings,
    }
    everything = got.partial == 0
    requests, tokens = tables_from_records(got.records)
    with out.write() as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(
            kind="real_run", id=out.id, config=config,
            inputs={"workload_id": workload.workload_id, "import_file": {"path": str(path), "sha256": sha}},
            status="incomplete" if got.missing else "complete",
            imported_from=tool.tool, arrival_source=got.arrival_source,
            num_requests=len(workload.requests), num_finished=len(got.records), num_failed=got.failed,
            failed_by_status={"error": got.failed} if got.failed else {}, missing=got.missing,
            token_times={"every_token": len(got.records) - got.partial, "first_and_last_only": got.partial},
            not_comparable=[] if everything else [
                "itl" if got.partial == len(got.records) else f"itl of {got.partial} of {len(got.records)} requests"],
        ))
    return out.path


def import_report(path: Path) -> str:
    """What the CLI prints after an import."""
    meta = read_meta(path / RUN_META, "real_run")
    lines = [f"imported real run: {path} (compare it with real_run={path.name})"]
    if meta.get("num_failed") or meta.get("missing"):
        lines.append(f"left out: {meta['num_failed']} failed and {meta['missing']} missing requests")
    if meta.get("not_comparable"):
        lines.append(f"cannot be compared (the file has no per-token times): {', '.join(meta['not_comparable'])}")
    return "\n".join(lines)
