"""Run directories (real and simulated share one schema): build, write, find and load them.

Both real-bench and vidur-sim turn per-token times into the same tables here, so TTFT, TPOT
and E2E are computed one way only (vLLM ``bench serve`` definitions, see ``specs/run.md``).
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
from gpu_simulate_test.io.schemas import ITERATION_METRICS, REQUEST_METRICS, REQUEST_OUTCOMES, TOKEN_METRICS
from gpu_simulate_test.io.tables import read_table, write_table

RUN_KINDS = ("real_run", "vidur_run")


@dataclass(frozen=True)
class RequestRecord:
    """What a stage measured (or simulated) for one finished request; times in ns from the run's start.

    ``token_indices`` is for sources that give only some tokens' times (an imported benchmark that kept chunk times
    without their token counts, or per-request results with only TTFT and E2E): the index of each time, the first (0)
    and the last token always among them.
    None: ``token_times_ns`` has every token's time.
    """

    request_id: int
    arrival_time_ns: int
    dispatch_time_ns: int
    num_prefill_tokens: int
    num_decode_tokens: int
    token_times_ns: Sequence[int]
    token_indices: Optional[Sequence[int]] = None

    @property
    def num_tokens(self) -> int:
        return int(self.token_indices[-1]) + 1 if self.token_indices is not None else len(self.token_times_ns)


@dataclass
class RunData:
    path: Path
    meta: dict[str, Any]
    requests: pd.DataFrame
    tokens: pd.DataFrame
    iterations: Optional[pd.DataFrame]
    outcomes: Optional[pd.DataFrame] = None  # request_outcomes.csv, of a run against a server

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def workload_id(self) -> str:
        return str(self.meta["inputs"].get("workload_id"))

    @property
    def complete(self) -> bool:
        return self.meta["status"] == "complete"


def tables_from_records(records: Iterable[RequestRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """request_metrics and token_metrics frames (sorted by request id) from per-request token times."""
    recs = sorted(records, key=lambda r: r.request_id)
    rows = np.fromiter((len(r.token_times_ns) for r in recs), dtype=np.int64, count=len(recs))
    if (rows == 0).any():
        rid = recs[int(np.argmax(rows == 0))].request_id
        raise ValueError(f"request {rid} has no token times; only finished requests belong in a run's tables")
    counts = np.fromiter((r.num_tokens for r in recs), dtype=np.int64, count=len(recs))
    times = np.fromiter((t for r in recs for t in r.token_times_ns), dtype=np.int64, count=int(rows.sum()))
    rids = np.fromiter((r.request_id for r in recs), dtype=np.int64, count=len(recs))
    ends = np.cumsum(rows)
    first = times[ends - rows] if len(recs) else np.array([], dtype=np.int64)
    last = times[ends - 1] if len(recs) else np.array([], dtype=np.int64)
    arrival = np.fromiter((r.arrival_time_ns for r in recs), dtype=np.int64, count=len(recs))
    span = last - first
    tpot = pd.array(
        np.where(counts > 1, np.rint(span / np.maximum(counts - 1, 1)), 0).astype(np.int64), dtype="Int64"
    )
    tpot[counts <= 1] = pd.NA
    requests = pd.DataFrame(
        {
            "request_id": rids,
            "arrival_time_ns": arrival,
            "dispatch_time_ns": np.fromiter((r.dispatch_time_ns for r in recs), dtype=np.int64, count=len(recs)),
            "first_token_time_ns": first,
            "completion_time_ns": last,
            "num_prefill_tokens": np.fromiter((r.num_prefill_tokens for r in recs), dtype=np.int64, count=len(recs)),
            "num_decode_tokens": np.fromiter((r.num_decode_tokens for r in recs), dtype=np.int64, count=len(recs)),
            "num_decode_tokens_actual": counts,
            "ttft_ns": first - arrival,
            "e2e_ns": last - arrival,
            "tpot_ns": tpot,
        }
    )
    index = np.fromiter((i for r in recs for i in (r.token_indices if r.token_indices is not None else range(len(r.token_times_ns)))),
                        dtype=np.int64, count=len(times))
    tokens = pd.DataFrame(
        {
            "request_id": np.repeat(rids, rows),
            "token_index": index,
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
        ("num_decode_tokens_actual", tokens.groupby("request_id", sort=True)["token_index"].max().to_numpy() + 1,
         "its last token_index + 1"),
        ("first_token_time_ns", grouped.min().to_numpy(), "its token 0 time"),
        ("completion_time_ns", grouped.max().to_numpy(), "its last token time"),
    )
    for col, expected, what in checks:
        bad = r[col].to_numpy() != expected
        if bad.any():
            rid = int(counts.index[int(np.argmax(bad))])
            raise ArtifactError(f"{source}: request {rid}: {col} in request_metrics.csv differs from {what} in token_metrics.csv; {fix}")


def write_run_tables(
    dest: Path, requests: pd.DataFrame, tokens: pd.DataFrame, iterations: Optional[pd.DataFrame] = None
) -> None:
    """Validate and write the run's tables into ``dest`` (normally the temporary dir of :func:`atomic_dir`)."""
    dest = Path(dest)
    req = write_table(requests, dest / REQUEST_METRICS.filename, REQUEST_METRICS)
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
    tokens = read_table(path / TOKEN_METRICS.filename, TOKEN_METRICS)
    check_consistency(requests, tokens, source=str(path))
    it_path = path / ITERATION_METRICS.filename
    iterations = read_table(it_path, ITERATION_METRICS) if it_path.exists() else None
    out_path = path / REQUEST_OUTCOMES.filename
    outcomes = read_table(out_path, REQUEST_OUTCOMES) if out_path.exists() else None
    return RunData(path=path, meta=meta, requests=requests, tokens=tokens, iterations=iterations, outcomes=outcomes)
