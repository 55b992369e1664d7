"""Run directories (real and simulated share one schema): build, write, find and load them.

Both real-bench and vidur-sim turn per-token times into the same tables here, so TTFT, TPOT
and E2E are computed one way only (vLLM ``bench serve`` definitions, see ``specs/run.md``).
A run known per request only (first-token and completion times and the output length, as published
ground truths and benchmark summaries give them) has no ``token_metrics.csv``: its requests come from
:func:`requests_from_summaries` and its meta carries :data:`TOKEN_METRICS_UNAVAILABLE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.ids import content_hash
from gpu_simulate_test.io.meta import read_meta, write_json
from gpu_simulate_test.io.outputs import RUN_META
from gpu_simulate_test.io.schemas import ITERATION_METRICS, REQUEST_METRICS, TOKEN_METRICS
from gpu_simulate_test.io.tables import read_table, write_table

RUN_KINDS = ("real_run", "vidur_run")
# run_meta.json keys of a run without token times: it has no token_metrics.csv, and what needs one (ITL, the
# timeline) is not compared. Pass them to build_meta: ``build_meta(..., **TOKEN_METRICS_UNAVAILABLE)``.
TOKEN_METRICS_UNAVAILABLE = {"token_metrics": "unavailable"}


@dataclass(frozen=True)
class RequestRecord:
    """What a stage measured (or simulated) for one finished request; times in ns from the run's start."""

    request_id: int
    arrival_time_ns: int
    dispatch_time_ns: int
    num_prefill_tokens: int
    num_decode_tokens: int
    token_times_ns: Sequence[int]


@dataclass(frozen=True)
class RequestSummary:
    """What a per-request result gives for one finished request (times in ns from the run's start): when its first
    and last output tokens came and how many there were, but not when the others came."""

    request_id: int
    arrival_time_ns: int
    dispatch_time_ns: int
    num_prefill_tokens: int
    num_decode_tokens: int
    num_output_tokens: int
    first_token_time_ns: int
    completion_time_ns: int


@dataclass
class RunData:
    path: Path
    meta: dict[str, Any]
    requests: pd.DataFrame
    tokens: Optional[pd.DataFrame]  # None: the run has per-request results only (TOKEN_METRICS_UNAVAILABLE)
    iterations: Optional[pd.DataFrame]

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def workload_id(self) -> str:
        return str(self.meta["inputs"].get("workload_id"))

    @property
    def complete(self) -> bool:
        return self.meta["status"] == "complete"


def _ints(values: Iterable[int], n: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=n)


def _requests_frame(recs: Sequence[RequestRecord | RequestSummary], first: np.ndarray, last: np.ndarray,
                    counts: np.ndarray) -> pd.DataFrame:
    """request_metrics from each request's first and last token times and token count (recs sorted by id)."""
    n = len(recs)
    arrival = _ints((r.arrival_time_ns for r in recs), n)
    tpot = pd.array(
        np.where(counts > 1, np.rint((last - first) / np.maximum(counts - 1, 1)), 0).astype(np.int64), dtype="Int64"
    )
    tpot[counts <= 1] = pd.NA
    return pd.DataFrame(
        {
            "request_id": _ints((r.request_id for r in recs), n),
            "arrival_time_ns": arrival,
            "dispatch_time_ns": _ints((r.dispatch_time_ns for r in recs), n),
            "first_token_time_ns": first,
            "completion_time_ns": last,
            "num_prefill_tokens": _ints((r.num_prefill_tokens for r in recs), n),
            "num_decode_tokens": _ints((r.num_decode_tokens for r in recs), n),
            "num_decode_tokens_actual": counts,
            "ttft_ns": first - arrival,
            "e2e_ns": last - arrival,
            "tpot_ns": tpot,
        }
    )


def requests_from_summaries(summaries: Iterable[RequestSummary]) -> pd.DataFrame:
    """The request_metrics frame (sorted by request id) of a run known per request only: TPOT follows from the
    first and last token times and the output length, exactly as :func:`tables_from_records` computes it."""
    recs = sorted(summaries, key=lambda r: r.request_id)
    n = len(recs)
    counts = _ints((r.num_output_tokens for r in recs), n)
    if (counts < 1).any():
        rid = recs[int(np.argmax(counts < 1))].request_id
        raise ValueError(f"request {rid} has no output token; only finished requests belong in a run's tables")
    return _requests_frame(recs, _ints((r.first_token_time_ns for r in recs), n),
                           _ints((r.completion_time_ns for r in recs), n), counts)


def tables_from_records(records: Iterable[RequestRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """request_metrics and token_metrics frames (sorted by request id) from per-request token times."""
    recs = sorted(records, key=lambda r: r.request_id)
    counts = _ints((len(r.token_times_ns) for r in recs), len(recs))
    if (counts == 0).any():
        rid = recs[int(np.argmax(counts == 0))].request_id
        raise ValueError(f"request {rid} has no token times; only finished requests belong in a run's tables")
    times = _ints((t for r in recs for t in r.token_times_ns), int(counts.sum()))
    rids = _ints((r.request_id for r in recs), len(recs))
    ends = np.cumsum(counts)
    first = times[ends - counts] if len(recs) else np.array([], dtype=np.int64)
    last = times[ends - 1] if len(recs) else np.array([], dtype=np.int64)
    requests = _requests_frame(recs, first, last, counts)
    starts = np.repeat(ends - counts, counts)
    tokens = pd.DataFrame(
        {
            "request_id": np.repeat(rids, counts),
            "token_index": np.arange(len(times), dtype=np.int64) - starts,
            "token_time_ns": times,
        }
    )
    return requests, tokens


def check_consistency(requests: pd.DataFrame, tokens: pd.DataFrame, *, source: str) -> None:
    """The request and token files describe the same requests, token counts and first/last times."""
    fix = "the two files were not written together; regenerate the run"
    req_ids = requests["request_id"].to_numpy()
    grouped = tokens.groupby("request_id", sort=True)["token_time_ns"]
    counts = grouped.size()
    if len(counts) != len(req_ids) or not np.array_equal(np.sort(req_ids), counts.index.to_numpy()):
        only_req = sorted(set(req_ids) - set(counts.index))[:5]
        only_tok = sorted(set(counts.index) - set(req_ids))[:5]
        raise ArtifactError(
            f"{source}: request_metrics.csv and token_metrics.csv list different requests "
            f"(only in requests: {only_req}, only in tokens: {only_tok}); {fix}"
        )
    r = requests.set_index("request_id").loc[counts.index]
    checks = (
        ("num_decode_tokens_actual", counts.to_numpy(), "its number of token rows"),
        ("first_token_time_ns", grouped.min().to_numpy(), "its token 0 time"),
        ("completion_time_ns", grouped.max().to_numpy(), "its last token time"),
    )
    for col, expected, what in checks:
        bad = r[col].to_numpy() != expected
        if bad.any():
            rid = int(counts.index[int(np.argmax(bad))])
            raise ArtifactError(f"{source}: request {rid}: {col} in request_metrics.csv differs from {what} in token_metrics.csv; {fix}")


def write_run_tables(
    dest: Path, requests: pd.DataFrame, tokens: Optional[pd.DataFrame], iterations: Optional[pd.DataFrame] = None
) -> None:
    """Validate and write the run's tables into ``dest`` (normally the temporary dir of :func:`atomic_dir`);
    ``tokens`` None for a run known per request only (its meta then carries :data:`TOKEN_METRICS_UNAVAILABLE`)."""
    dest = Path(dest)
    req = write_table(requests, dest / REQUEST_METRICS.filename, REQUEST_METRICS)
    if tokens is not None:
        tok = write_table(tokens, dest / TOKEN_METRICS.filename, TOKEN_METRICS)
        check_consistency(req, tok, source=str(dest))
    if iterations is not None:
        write_table(iterations, dest / ITERATION_METRICS.filename, ITERATION_METRICS)


def write_run_meta(dest: Path, meta: dict[str, Any]) -> None:
    if meta.get("kind") not in RUN_KINDS:
        raise ValueError(f"run meta kind must be one of {RUN_KINDS}")
    write_json(Path(dest) / RUN_META, meta)


def resolve_dir(root: Path, id_or_path: str, what: str) -> Path:
    """An existing directory given as a path, or ``root/<id>``; else an error that lists what exists."""
    p = Path(str(id_or_path))
    if p.is_dir():
        return p
    cand = Path(root) / str(id_or_path)
    if cand.is_dir():
        return cand
    root = Path(root)
    have = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    hint = f"; available under {root}: {', '.join(have[-10:])}" if have else f"; {root} holds none yet"
    raise InputError(f"{what} {id_or_path!r} not found (neither a directory nor {cand}){hint}")


def run_content(path: Path) -> str:
    """Fingerprint of a run's tables (what a comparison reads): a run replaced in place gets a new one."""
    tables = (REQUEST_METRICS, TOKEN_METRICS, ITERATION_METRICS)
    return content_hash(Path(path) / t.filename for t in tables if (Path(path) / t.filename).is_file())


def recorded_backend(path: Path) -> dict[str, Any]:
    """The ``backend`` settings a real run recorded in its ``run_meta.json`` (the engine's resolved ``num_blocks``
    among them): what vidur-sim takes from the run, and what experiment checks a simulation against."""
    return dict(read_meta(Path(path) / RUN_META, "real_run").get("backend") or {})


def imported_already(path: Path, source: str, sha256: str, workload_id: str) -> bool:
    """``path`` holds an import (complete or incomplete) of the file whose content is ``sha256`` (recorded as
    ``inputs[source].sha256``) for ``workload_id``: importing the same file again is then a no-op, like workload-spec."""
    try:
        meta = read_meta(Path(path) / RUN_META, "real_run")
    except ArtifactError:
        return False
    inputs = meta["inputs"]
    return (meta["status"] in ("complete", "incomplete") and inputs.get("workload_id") == workload_id
            and (inputs.get(source) or {}).get("sha256") == sha256)


def load_run(path: Path, kind: Optional[str] = None) -> RunData:
    """Read a run directory, validating every file and their agreement."""
    path = Path(path)
    meta = read_meta(path / RUN_META, kind)
    if meta["kind"] not in RUN_KINDS:
        raise ArtifactError(f"{path / RUN_META}: kind {meta['kind']!r} is not a run ({RUN_KINDS})")
    requests = read_table(path / REQUEST_METRICS.filename, REQUEST_METRICS)
    tokens: Optional[pd.DataFrame] = None
    if meta.get("token_metrics") != TOKEN_METRICS_UNAVAILABLE["token_metrics"]:
        tokens = read_table(path / TOKEN_METRICS.filename, TOKEN_METRICS)
        check_consistency(requests, tokens, source=str(path))
    it_path = path / ITERATION_METRICS.filename
    iterations = read_table(it_path, ITERATION_METRICS) if it_path.exists() else None
    return RunData(path=path, meta=meta, requests=requests, tokens=tokens, iterations=iterations)
