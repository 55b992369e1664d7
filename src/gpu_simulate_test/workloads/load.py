"""Read a workload directory back, validated, for the stages that replay or simulate it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import WORKLOAD_META
from gpu_simulate_test.io.runs import resolve_dir
from gpu_simulate_test.io.schemas import TRACE_INTERVALS, TRACE_LENGTHS
from gpu_simulate_test.io.tables import read_table

PROMPTS = "prompts.jsonl"


@dataclass(frozen=True)
class WorkloadRequest:
    request_id: int
    arrival_time_ns: int
    num_prefill_tokens: int
    num_decode_tokens: int


@dataclass
class Workload:
    """A validated workload: requests in arrival order; prompts are read only when asked for."""

    workload_id: str
    path: Path
    meta: dict[str, Any]
    requests: list[WorkloadRequest]
    _prompts: Optional[dict[int, list[int]]] = field(default=None, repr=False)

    @property
    def max_prefill(self) -> int:
        return max(r.num_prefill_tokens for r in self.requests)

    @property
    def max_context(self) -> int:
        return max(r.num_prefill_tokens + r.num_decode_tokens for r in self.requests)

    def prompt_token_ids(self) -> dict[int, list[int]]:
        """``request_id -> prompt token ids`` (each exactly ``num_prefill_tokens`` long)."""
        if self._prompts is None:
            self._prompts = read_prompts(self.path / PROMPTS, {r.request_id: r.num_prefill_tokens for r in self.requests})
        return self._prompts

    def prompt_texts(self) -> dict[int, str]:
        """``request_id -> text`` of the prompts that came from a text (``prompt`` in ``prompts.jsonl``; the text
        encodes into exactly the prompt's ids with the workload's tokenizer); synthetic prompts have none."""
        out = {}
        with open(self.path / PROMPTS) as fh:
            for line in fh:
                obj = json.loads(line)
                if isinstance(obj.get("prompt"), str):
                    out[int(obj["request_id"])] = obj["prompt"]
        return out


def read_prompts(path: Path, lengths: dict[int, int]) -> dict[int, list[int]]:
    """Read ``prompts.jsonl``; every request of ``lengths`` appears once with exactly that many ids."""
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; regenerate the workload with workload-spec")
    out: dict[int, list[int]] = {}
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path}: line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{where}: not valid JSON ({exc.msg}); regenerate the workload") from exc
            rid = obj.get("request_id") if isinstance(obj, dict) else None
            ids = obj.get("prompt_token_ids") if isinstance(obj, dict) else None
            if not isinstance(rid, int) or not isinstance(ids, list):
                raise ArtifactError(f"{where}: needs an integer 'request_id' and a list 'prompt_token_ids'")
            if rid not in lengths:
                raise ArtifactError(f"{where}: request_id {rid} is not in trace_lengths.csv")
            if rid in out:
                raise ArtifactError(f"{where}: request_id {rid} appears twice")
            if len(ids) != lengths[rid] or not all(isinstance(t, int) and t >= 0 for t in ids):
                raise ArtifactError(
                    f"{where}: request {rid} has {len(ids)} prompt token ids, trace_lengths.csv says {lengths[rid]} "
                    "(ids must be non-negative integers)"
                )
            out[rid] = ids
    missing = sorted(set(lengths) - set(out))
    if missing:
        raise ArtifactError(f"{path}: no prompt for request(s) {missing[:10]}; regenerate the workload")
    return out


def load_workload(workloads_root: Path, workload_id: str) -> Workload:
    """Find ``workload_id`` (an id under ``workloads_root`` or a directory) and validate its files."""
    path = resolve_dir(Path(workloads_root), workload_id, "workload")
    meta = read_meta(path / WORKLOAD_META, "workload")
    lengths = read_table(path / TRACE_LENGTHS.filename, TRACE_LENGTHS)
    intervals = read_table(path / TRACE_INTERVALS.filename, TRACE_INTERVALS)
    if len(lengths) == 0:
        raise ArtifactError(f"{path / TRACE_LENGTHS.filename}: no requests")
    merged = intervals.merge(lengths, on="request_id", how="outer", indicator=True)
    if (merged["_merge"] != "both").any():
        rid = int(merged.loc[merged["_merge"] != "both", "request_id"].iloc[0])
        raise ArtifactError(f"{path}: request {rid} is in only one of trace_lengths.csv and trace_intervals.csv")
    order = pd.Index(intervals["request_id"])
    merged = merged.set_index("request_id").loc[order].reset_index()
    requests = [
        WorkloadRequest(int(r.request_id), int(r.arrival_time_ns), int(r.num_prefill_tokens), int(r.num_decode_tokens))
        for r in merged.itertuples(index=False)
    ]
    return Workload(workload_id=str(meta["id"]), path=path, meta=meta, requests=requests)
