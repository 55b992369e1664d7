"""Import per-request results (TTFT, E2E and output length, no token times) as a real run of a given workload.

Many ground truths give only this much: benchmark summaries, published studies' per-request tables. The CSV
(``compare-runs mode=import_requests requests_csv=<file> workload_id=<id>``) has one row per request:

- required: ``request_id`` (the workload's), ``ttft_ms``, ``e2e_ms`` (from the request's start), ``output_tokens``;
- optional: ``start_ms`` (when the request was sent, on any clock: made relative to the earliest; without it each
  request starts at its workload arrival time) and ``error`` (non-empty: the request failed and is left out).

The run has no ``token_metrics.csv`` and its meta says so (:data:`~gpu_simulate_test.io.runs.TOKEN_METRICS_UNAVAILABLE`):
compare-runs compares TTFT, TPOT (from E2E, TTFT and the output length, vLLM's definition) and E2E, and says that
ITL could not be. Requests the file lacks or marks failed make the run ``incomplete``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.meta import build_meta
from gpu_simulate_test.io.outputs import stage_output
from gpu_simulate_test.io.runs import (
    TOKEN_METRICS_UNAVAILABLE,
    RequestSummary,
    imported_already,
    requests_from_summaries,
    write_run_meta,
    write_run_tables,
)
from gpu_simulate_test.io.units import NS_PER_MS
from gpu_simulate_test.workloads.load import Workload, load_workload

log = logging.getLogger(__name__)
REQUIRED = ("request_id", "ttft_ms", "e2e_ms", "output_tokens")
OPTIONAL = ("start_ms", "error")


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"error": str}, keep_default_na=False,
                         na_values={c: [""] for c in (*REQUIRED, "start_ms")})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: not a readable CSV ({exc}); columns {list(REQUIRED)} (optional {list(OPTIONAL)})"
        ) from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{path}: line 1: missing column(s) {missing}; the header is {list(df.columns)}")
    for col in (*REQUIRED, *(["start_ms"] if "start_ms" in df.columns else [])):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{path}: line {i + 2}, column {col!r}: {df[col].iloc[i]!r} is not a number")
        df[col] = values
    return df


def summaries_from_csv(path: Path, df: pd.DataFrame, workload: Workload) -> tuple[list[RequestSummary], int]:
    """One summary per successful request, and how many of the workload's requests are left out."""
    by_id = {r.request_id: r for r in workload.requests}
    failed = df["error"].astype(str).str.strip() != "" if "error" in df.columns else pd.Series(False, index=df.index)
    starts = None
    if "start_ms" in df.columns:
        starts = np.rint((df["start_ms"] - df["start_ms"].min()).to_numpy() * NS_PER_MS).astype(np.int64)
    seen: set[int] = set()
    out = []
    for i, row in enumerate(df.itertuples(index=False)):
        where = f"{path}: line {i + 2}"
        rid = row.request_id
        if rid != int(rid) or int(rid) not in by_id:
            raise InputError(f"{where}: request_id {rid:g} is not a request of workload {workload.workload_id!r}")
        rid = int(rid)
        if rid in seen:
            raise InputError(f"{where}: request_id {rid} appears twice")
        seen.add(rid)
        if failed.iloc[i]:
            continue
        w = by_id[rid]
        n = row.output_tokens
        if n != int(n) or not 1 <= n <= w.num_decode_tokens:
            raise InputError(f"{where}: output_tokens is {n:g}, expected a whole 1..{w.num_decode_tokens} "
                             "(the workload's decode length)")
        if not 0 <= row.ttft_ms <= row.e2e_ms:
            raise InputError(f"{where}: need 0 <= ttft_ms <= e2e_ms, got ttft_ms={row.ttft_ms:g}, e2e_ms={row.e2e_ms:g}")
        arrival = int(starts[i]) if starts is not None else w.arrival_time_ns
        out.append(RequestSummary(
            request_id=rid, arrival_time_ns=arrival, dispatch_time_ns=arrival, num_prefill_tokens=w.num_prefill_tokens,
            num_decode_tokens=w.num_decode_tokens, num_output_tokens=int(n),
            first_token_time_ns=arrival + int(np.rint(row.ttft_ms * NS_PER_MS)),
            completion_time_ns=arrival + int(np.rint(row.e2e_ms * NS_PER_MS)),
        ))
    if not out:
        raise InputError(f"{path}: no successful request to import")
    return out, len(workload.requests) - len(out)


def import_request_results(app: CompareRunsAppConfig) -> Path:
    """Write ``<paths.real_runs>/<run_id>/`` from ``app.requests_csv`` for workload ``app.workload_id``."""
    if not app.requests_csv or not app.workload_id:
        raise InputError("mode=import_requests needs requests_csv=<file> and workload_id=<id>")
    path = Path(str(app.requests_csv))
    if not path.is_file():
        raise InputError(f"requests_csv {path}: no such file")
    workload = load_workload(Path(app.paths.workloads), str(app.workload_id))
    summaries, left_out = summaries_from_csv(path, _read(path), workload)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run_id = str(app.run_id or f"requests-{sha[:12]}-{workload.workload_id}"[:128])
    done = Path(app.paths.real_runs) / run_id
    if not app.overwrite and imported_already(done, "requests_csv", sha, workload.workload_id):
        log.info("%s: this file was imported for workload %s already, as %s; nothing rewritten", path, workload.workload_id, done)
        return done
    out = stage_output(app.paths.real_runs, run_id, lambda: run_id, overwrite=bool(app.overwrite))
    with out.write() as tmp:
        write_run_tables(tmp, requests_from_summaries(summaries), None)
        write_run_meta(tmp, build_meta(
            kind="real_run", id=out.id, config={"imported": {"requests_csv": str(path)}},
            inputs={"workload_id": workload.workload_id, "requests_csv": {"path": str(path), "sha256": sha}},
            status="incomplete" if left_out else "complete", imported_from="per-request results (CSV)",
            left_out=left_out, **TOKEN_METRICS_UNAVAILABLE,
        ))
    return out.path
