"""Every artifact's contract in one place: columns, dtypes, units and invariants.

``specs/*.md`` documents each table with the Markdown that :func:`markdown_table` renders from
these definitions, and a test checks that they agree. Readers and writers in :mod:`.tables`
validate against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

DTYPES = ("int", "float", "str", "bool")

# A check over a whole table: returns a boolean mask of the offending rows (True = bad).
RowCheck = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    unit: str
    description: str
    nullable: bool = False
    min: Optional[float] = None  # inclusive lower bound

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name}: dtype {self.dtype!r} not in {DTYPES}")


@dataclass(frozen=True)
class Invariant:
    description: str
    bad_rows: RowCheck


@dataclass(frozen=True)
class TableSchema:
    """A CSV artifact. Columns are written in this order; ``optional`` columns may be absent."""

    name: str
    filename: str
    spec_file: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    invariants: tuple[Invariant, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _non_decreasing(col: str) -> RowCheck:
    def check(df: pd.DataFrame) -> np.ndarray:
        v = df[col].to_numpy()
        bad = np.zeros(len(v), dtype=bool)
        if len(v) > 1:
            bad[1:] = v[1:] < v[:-1]
        return bad

    return check


def _ge(a: str, b: str) -> RowCheck:
    """Row is bad where a < b (nulls are skipped)."""

    def check(df: pd.DataFrame) -> np.ndarray:
        x, y = df[a], df[b]
        return ((x < y) & x.notna() & y.notna()).to_numpy(dtype=bool)

    return check


def _equals_diff(target: str, end: str, start: str) -> RowCheck:
    def check(df: pd.DataFrame) -> np.ndarray:
        return (df[target] != df[end] - df[start]).to_numpy(dtype=bool)

    return check


def _tpot_consistent(df: pd.DataFrame) -> np.ndarray:
    n = df["num_decode_tokens_actual"].to_numpy(dtype=np.int64)
    tpot = df["tpot_ns"]
    span = (df["completion_time_ns"] - df["first_token_time_ns"]).to_numpy(dtype=np.float64)
    expected = np.where(n > 1, span / np.maximum(n - 1, 1), np.nan)
    has = tpot.notna().to_numpy()
    bad = has != (n > 1)
    vals = tpot.to_numpy(dtype=np.float64, na_value=np.nan)
    bad |= has & (np.abs(vals - np.nan_to_num(expected)) > 1.0)
    return bad


def _per_request_increasing(df: pd.DataFrame) -> np.ndarray:
    """Token rows: within a request, indices run 0,1,2,... and times strictly increase."""
    req = df["request_id"].to_numpy()
    idx = df["token_index"].to_numpy()
    t = df["token_time_ns"].to_numpy()
    bad = np.zeros(len(req), dtype=bool)
    if len(req) == 0:
        return bad
    same = np.zeros(len(req), dtype=bool)
    same[1:] = req[1:] == req[:-1]
    bad[0] = idx[0] != 0
    bad[1:] = np.where(same[1:], (idx[1:] != idx[:-1] + 1) | (t[1:] <= t[:-1]), idx[1:] != 0)
    return bad


_REQUESTS_RE = re.compile(r"^r\d+:\d+(;r\d+:\d+)*$")


def _requests_field_ok(df: pd.DataFrame) -> np.ndarray:
    """``requests`` parses as ``r<id>:<tokens>;...``, lists batch_size entries and sums to the token counts."""
    bad = np.zeros(len(df), dtype=bool)
    total = (df["num_prefill_tokens"] + df["num_decode_tokens"]).to_numpy()
    bs = df["batch_size"].to_numpy()
    for i, s in enumerate(df["requests"].astype(str).to_numpy()):
        if not _REQUESTS_RE.match(s):
            bad[i] = True
            continue
        parts = s.split(";")
        bad[i] = len(parts) != bs[i] or sum(int(p.split(":")[1]) for p in parts) != total[i]
    return bad


def parse_requests_field(value: str) -> list[tuple[int, int]]:
    """``"r3:512;r7:1"`` -> ``[(3, 512), (7, 1)]``."""
    return [(int(rid[1:]), int(n)) for rid, n in (p.split(":") for p in value.split(";"))]


def format_requests_field(items: list[tuple[int, int]]) -> str:
    return ";".join(f"r{rid}:{n}" for rid, n in items)


def _rid(desc: str = "Request id; the same id in every file of a workload and its runs") -> Column:
    return Column("request_id", "int", "-", desc, min=0)


TRACE_LENGTHS = TableSchema(
    name="trace_lengths",
    filename="trace_lengths.csv",
    spec_file="workload.md",
    description="One row per request: how many prompt tokens it brings and how many tokens it decodes.",
    columns=(
        _rid(),
        Column("num_prefill_tokens", "int", "tokens", "Prompt length; equals len(prompt_token_ids)", min=1),
        Column("num_decode_tokens", "int", "tokens", "Tokens to generate (forced: EOS is ignored)", min=1),
    ),
    key=("request_id",),
)

TRACE_INTERVALS = TableSchema(
    name="trace_intervals",
    filename="trace_intervals.csv",
    spec_file="workload.md",
    description="One row per request, in arrival order: when it is scheduled to arrive.",
    columns=(
        _rid(),
        Column("arrival_time_ns", "int", "ns", "Scheduled arrival, from the workload's start", min=0),
        Column("inter_arrival_ns", "int", "ns", "arrival_time_ns minus the previous request's (0 for the first)", min=0),
    ),
    key=("request_id",),
    optional=("inter_arrival_ns",),
    invariants=(Invariant("arrival_time_ns is non-decreasing", _non_decreasing("arrival_time_ns")),),
)

REQUEST_METRICS = TableSchema(
    name="request_metrics",
    filename="request_metrics.csv",
    spec_file="run.md",
    description="One row per finished request of a real or simulated run.",
    columns=(
        _rid(),
        Column("arrival_time_ns", "int", "ns", "Scheduled arrival (from trace_intervals.csv)", min=0),
        Column("dispatch_time_ns", "int", "ns", "When the request was handed to the engine's queue", min=0),
        Column("first_token_time_ns", "int", "ns", "When the first output token was produced", min=0),
        Column("completion_time_ns", "int", "ns", "When the last output token was produced", min=0),
        Column("num_prefill_tokens", "int", "tokens", "Prompt length", min=1),
        Column("num_decode_tokens", "int", "tokens", "Tokens the workload asked for", min=1),
        Column("num_decode_tokens_actual", "int", "tokens", "Tokens generated (less only with early stop)", min=1),
        Column("ttft_ns", "int", "ns", "first_token_time_ns - arrival_time_ns", min=0),
        Column("e2e_ns", "int", "ns", "completion_time_ns - arrival_time_ns", min=0),
        Column(
            "tpot_ns", "int", "ns",
            "(completion - first token) / (num_decode_tokens_actual - 1), rounded to the nearest ns; empty for one-token outputs",
            nullable=True, min=0,
        ),
    ),
    key=("request_id",),
    invariants=(
        Invariant("dispatch_time_ns >= arrival_time_ns", _ge("dispatch_time_ns", "arrival_time_ns")),
        Invariant("first_token_time_ns >= dispatch_time_ns", _ge("first_token_time_ns", "dispatch_time_ns")),
        Invariant("completion_time_ns >= first_token_time_ns", _ge("completion_time_ns", "first_token_time_ns")),
        Invariant("num_decode_tokens >= num_decode_tokens_actual", _ge("num_decode_tokens", "num_decode_tokens_actual")),
        Invariant("ttft_ns = first_token_time_ns - arrival_time_ns", _equals_diff("ttft_ns", "first_token_time_ns", "arrival_time_ns")),
        Invariant("e2e_ns = completion_time_ns - arrival_time_ns", _equals_diff("e2e_ns", "completion_time_ns", "arrival_time_ns")),
        Invariant("tpot_ns = (completion - first token)/(n - 1) within 1 ns, empty iff n = 1", _tpot_consistent),
    ),
)

TOKEN_METRICS = TableSchema(
    name="token_metrics",
    filename="token_metrics.csv",
    spec_file="run.md",
    description="One row per generated token, grouped by request, in token order.",
    columns=(
        _rid(),
        Column("token_index", "int", "-", "0 for the first output token", min=0),
        Column("token_time_ns", "int", "ns", "When the engine produced this token (its own event, never interpolated)", min=0),
    ),
    key=("request_id", "token_index"),
    invariants=(Invariant("per request: token_index runs 0,1,2,... and token_time_ns strictly increases", _per_request_increasing),),
)

ITERATION_METRICS = TableSchema(
    name="iteration_metrics",
    filename="iteration_metrics.csv",
    spec_file="run.md",
    description="One row per engine iteration (forward step), for engines that work in iterations.",
    columns=(
        Column("iteration_id", "int", "-", "0, 1, 2, ... in execution order", min=0),
        Column("start_time_ns", "int", "ns", "Step start", min=0),
        Column("end_time_ns", "int", "ns", "Step end", min=0),
        Column("batch_size", "int", "requests", "Requests in the step", min=1),
        Column("num_prefill_tokens", "int", "tokens", "Prompt tokens processed in the step", min=0),
        Column("num_decode_tokens", "int", "tokens", "Decode tokens processed in the step", min=0),
        Column("requests", "str", "-", "Each request in the step with its tokens: r3:512;r7:1;r9:1"),
    ),
    key=("iteration_id",),
    invariants=(
        Invariant("end_time_ns >= start_time_ns", _ge("end_time_ns", "start_time_ns")),
        Invariant("start_time_ns is non-decreasing", _non_decreasing("start_time_ns")),
        Invariant("requests lists batch_size entries whose tokens sum to prefill + decode", _requests_field_ok),
    ),
)

TABLES: dict[str, TableSchema] = {
    s.name: s for s in (TRACE_LENGTHS, TRACE_INTERVALS, REQUEST_METRICS, TOKEN_METRICS, ITERATION_METRICS)
}


def register_table(schema: TableSchema) -> TableSchema:
    """Add a stage's table to :data:`TABLES` (so the specs test covers it); returns it for assignment."""
    if schema.name in TABLES and TABLES[schema.name] != schema:
        raise ValueError(f"table schema {schema.name!r} registered twice")
    TABLES[schema.name] = schema
    return schema


def markdown_table(schema: TableSchema) -> str:
    """The column table as it must appear in ``specs/<spec_file>``."""
    lines = ["| column | dtype | unit | nullable | description |", "| --- | --- | --- | --- | --- |"]
    for c in schema.columns:
        opt = " (optional column)" if c.name in schema.optional else ""
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {'yes' if c.nullable else 'no'} | {c.description}{opt} |")
    return "\n".join(lines)
