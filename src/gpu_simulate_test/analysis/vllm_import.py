"""Import a ``vllm bench serve --save-result --save-detailed`` JSON as a real run of a given workload.

Accepted keys (times in seconds, as vLLM writes them; per-request lists all of one length N):

- required: ``ttfts`` (list of float), ``itls`` (list of lists of float: the gaps after the first
  token), ``input_lens`` and ``output_lens`` (lists of int);
- optional: ``start_times`` (list of float, any clock: made relative to the earliest; without it
  each request is taken to start at its workload arrival time), ``errors`` (list of str: a non-empty
  one marks a failed request, left out), and the scalars ``model_id``, ``backend``, ``request_rate``,
  ``date`` (copied into the run's meta).

Request ``i`` of the file is the workload's ``i``-th request in arrival order (the order a replay
sends them); its prompt length must equal the workload's, its output length must not exceed it,
and it must have exactly ``output_len - 1`` ITLs (one timestamp per token; a streamed chunk that
carried several tokens cannot be split without interpolating, which this tool never does).
Failed or missing requests make the run ``incomplete``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.meta import build_meta
from gpu_simulate_test.io.outputs import stage_output
from gpu_simulate_test.io.runs import (
    RequestRecord,
    imported_already,
    tables_from_records,
    write_run_meta,
    write_run_tables,
)
from gpu_simulate_test.io.units import NS_PER_S
from gpu_simulate_test.workloads.load import Workload, load_workload

log = logging.getLogger(__name__)
REQUIRED = ("ttfts", "itls", "input_lens", "output_lens")
SCALARS = ("model_id", "backend", "request_rate", "date", "tokenizer_id", "max_concurrency", "burstiness")


def _lists(path: Path, obj: Any) -> tuple[dict[str, list[Any]], int]:
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object (vllm bench serve --save-result --save-detailed)")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise InputError(
            f"{path}: missing key(s) {missing}; save the benchmark with --save-result --save-detailed "
            f"(accepted keys: {', '.join(REQUIRED)}, optional start_times, errors)"
        )
    lists = {k: obj[k] for k in (*REQUIRED, "start_times", "errors") if k in obj}
    n = len(obj["ttfts"]) if isinstance(obj["ttfts"], list) else -1
    for k, v in lists.items():
        if not isinstance(v, list) or len(v) != n:
            raise InputError(f"{path}: {k!r} must be a list as long as 'ttfts' ({n}); got {type(v).__name__} of length {len(v) if isinstance(v, list) else '-'}")
    return lists, n


def records_from_vllm(path: Path, obj: Any, workload: Workload) -> tuple[list[RequestRecord], int, str]:
    """Records of the successful requests, how many were left out, and where arrival times came from."""
    lists, n = _lists(path, obj)
    if n > len(workload.requests):
        raise InputError(f"{path}: {n} requests but workload {workload.workload_id!r} has {len(workload.requests)}")
    starts: Optional[np.ndarray] = None
    if "start_times" in lists:
        starts = np.asarray(lists["start_times"], dtype=np.float64)
        starts = np.rint((starts - starts.min()) * NS_PER_S).astype(np.int64) if n else starts.astype(np.int64)
    records, left_out = [], len(workload.requests) - n
    for i in range(n):
        w = workload.requests[i]
        where = f"{path}: request {i} (workload request_id {w.request_id})"
        if lists.get("errors") and lists["errors"][i]:
            left_out += 1
            continue
        in_len, out_len, itls = lists["input_lens"][i], lists["output_lens"][i], lists["itls"][i]
        if in_len != w.num_prefill_tokens:
            raise InputError(f"{where}: input_lens is {in_len}, the workload's prompt has {w.num_prefill_tokens} tokens; "
                             "is this the same workload, sent in arrival order?")
        if not isinstance(out_len, int) or not 1 <= out_len <= w.num_decode_tokens:
            raise InputError(f"{where}: output_lens is {out_len!r}, expected 1..{w.num_decode_tokens} (the workload's decode length)")
        if not isinstance(itls, list) or len(itls) != out_len - 1:
            raise InputError(f"{where}: {len(itls) if isinstance(itls, list) else 'no'} ITLs for {out_len} output tokens "
                             "(need output_len - 1: one timestamp per token; run vLLM without multi-token stream chunks)")
        arrival = int(starts[i]) if starts is not None else w.arrival_time_ns
        first = arrival + int(np.rint(float(lists["ttfts"][i]) * NS_PER_S))
        gaps = np.rint(np.asarray(itls, dtype=np.float64) * NS_PER_S).astype(np.int64)
        if first < arrival or (gaps <= 0).any():
            raise InputError(f"{where}: ttft must be >= 0 and every ITL > 0 (after rounding to ns)")
        times = first + np.concatenate(([0], np.cumsum(gaps)))
        records.append(RequestRecord(w.request_id, arrival, arrival, w.num_prefill_tokens, w.num_decode_tokens, times.tolist()))
    if not records:
        raise InputError(f"{path}: no successful request to import")
    return records, left_out, "start_times" if starts is not None else "workload arrival times"


def import_vllm_run(app: CompareRunsAppConfig) -> Path:
    """Write ``<paths.real_runs>/<run_id>/`` from ``app.vllm_json`` for workload ``app.workload_id``."""
    if not app.vllm_json or not app.workload_id:
        raise InputError("mode=import_vllm needs vllm_json=<file> and workload_id=<id>")
    path = Path(str(app.vllm_json))
    if not path.is_file():
        raise InputError(f"vllm_json {path}: no such file")
    raw = path.read_bytes()
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    workload = load_workload(Path(app.paths.workloads), str(app.workload_id))
    records, left_out, arrival_source = records_from_vllm(path, obj, workload)
    sha = hashlib.sha256(raw).hexdigest()
    run_id = str(app.run_id or f"vllm-{sha[:12]}-{workload.workload_id}"[:128])
    done = Path(app.paths.real_runs) / run_id
    if not app.overwrite and imported_already(done, "vllm_json", sha, workload.workload_id):
        log.info("%s: this file was imported for workload %s already, as %s; nothing rewritten", path, workload.workload_id, done)
        return done
    out = stage_output(app.paths.real_runs, run_id, lambda: run_id, overwrite=bool(app.overwrite))
    scalars = {k: obj[k] for k in SCALARS if k in obj}
    config = {
        "model": {"name": str(obj.get("model_id", "?"))},
        "backend": {"name": f"vllm-{obj.get('backend', 'serve')}"},
        "hardware": {"name": "unknown (vLLM import)"},
        "vllm": scalars,
    }
    requests, tokens = tables_from_records(records)
    with out.write() as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(
            kind="real_run", id=out.id, config=config,
            inputs={"workload_id": workload.workload_id, "vllm_json": {"path": str(path), "sha256": sha}},
            status="incomplete" if left_out else "complete",
            imported_from="vllm bench serve --save-detailed", arrival_source=arrival_source, left_out=left_out,
        ))
    return out.path
