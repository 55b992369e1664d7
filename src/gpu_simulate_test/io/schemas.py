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
    """Token rows: within a request, indices start at 0 and increase, and times never decrease."""
    req = df["request_id"].to_numpy()
    idx = df["token_index"].to_numpy()
    t = df["token_time_ns"].to_numpy()
    bad = np.zeros(len(req), dtype=bool)
    if len(req) == 0:
        return bad
    same = np.zeros(len(req), dtype=bool)
    same[1:] = req[1:] == req[:-1]
    bad[0] = idx[0] != 0
    bad[1:] = np.where(same[1:], (idx[1:] <= idx[:-1]) | (t[1:] < t[:-1]), idx[1:] != 0)
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


KV_TOKENS = "kv_tokens"  # iteration_metrics.csv's optional column


def _kv_tokens_ok(df: pd.DataFrame) -> np.ndarray:
    """``kv_tokens`` parses as ``<int>;...``, one per entry of ``requests``, each >= that entry's tokens."""
    bad = np.zeros(len(df), dtype=bool)
    if KV_TOKENS not in df.columns:
        return bad
    for i, (kv, reqs) in enumerate(zip(df[KV_TOKENS].astype(str).to_numpy(), df["requests"].astype(str).to_numpy())):
        lengths = kv.split(";")
        if not all(x.isdigit() for x in lengths) or not _REQUESTS_RE.match(reqs):
            bad[i] = True
            continue
        tokens = [int(p.split(":")[1]) for p in reqs.split(";")]
        bad[i] = len(lengths) != len(tokens) or any(int(k) < n for k, n in zip(lengths, tokens))
    return bad


def parse_requests_field(value: str) -> list[tuple[int, int]]:
    """``"r3:512;r7:1"`` -> ``[(3, 512), (7, 1)]``."""
    return [(int(rid[1:]), int(n)) for rid, n in (p.split(":") for p in value.split(";"))]


def parse_kv_tokens_field(value: str) -> list[int]:
    """``"1025;960"`` -> ``[1025, 960]``: each request's KV after the step, in the order of ``requests``."""
    return [int(k) for k in value.split(";")]


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
    description="One row per generated token whose time is known, grouped by request, in token order.",
    columns=(
        _rid(),
        Column("token_index", "int", "-", "0 for the first output token", min=0),
        Column("token_time_ns", "int", "ns", "When the engine produced this token (its own event, never interpolated)", min=0),
    ),
    key=("request_id", "token_index"),
    invariants=(Invariant("per request: token_index starts at 0 and increases; token_time_ns never decreases", _per_request_increasing),),
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
        Column(KV_TOKENS, "str", "tokens",
               "Each request's KV-cache length after the step, in the order of requests: 512;41;97"),
    ),
    key=("iteration_id",),
    optional=(KV_TOKENS,),
    invariants=(
        Invariant("end_time_ns >= start_time_ns", _ge("end_time_ns", "start_time_ns")),
        Invariant("start_time_ns is non-decreasing", _non_decreasing("start_time_ns")),
        Invariant("requests lists batch_size entries whose tokens sum to prefill + decode", _requests_field_ok),
        Invariant("kv_tokens (when present) lists one length per request, each at least its tokens", _kv_tokens_ok),
    ),
)

REQUEST_OUTCOMES = TableSchema(
    name="request_outcomes",
    filename="request_outcomes.csv",
    spec_file="run.md",
    description="One row per request sent to a server (backend openai): how it ended and what its stream carried.",
    columns=(
        _rid(),
        Column("status", "str", "-", "ok, or why it failed: connect_error, timeout, http_error, truncated, bad_stream, "
               "server_error, uncounted_stream, no_tokens, too_many_tokens, transport_error, cancelled"),
        Column("message", "str", "-", "What went wrong, in one line; empty when ok", nullable=True),
        Column("http_status", "int", "-", "The response's HTTP status; empty when none came", nullable=True, min=100),
        Column("first_byte_ns", "int", "ns", "When the request's first byte was sent; empty when it never was", nullable=True, min=0),
        Column("server_prompt_tokens", "int", "tokens", "The server's own prompt token count (usage.prompt_tokens); empty when not reported",
               nullable=True, min=0),
        Column("chunks", "int", "-", "Streamed chunks that carried tokens", min=0),
        Column("multi_token_chunks", "int", "-", "Of those, chunks that carried more than one token (each of their tokens gets the chunk's time)", min=0),
        Column("tokens", "int", "tokens", "Tokens received (0 unless ok)", min=0),
    ),
    key=("request_id",),
)

TABLES: dict[str, TableSchema] = {
    s.name: s for s in (TRACE_LENGTHS, TRACE_INTERVALS, REQUEST_METRICS, TOKEN_METRICS, ITERATION_METRICS, REQUEST_OUTCOMES)
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


# --- vidur-profile ---
# Vidur's predictor reads mlp.csv / attention.csv by these exact column names; its times are float ms.
PROFILE_STATS = ("median", "mean", "std", "min", "max")
MLP_PROFILE_OPS = (
    "attn_pre_proj", "attn_post_proj", "attn_rope", "mlp_up_proj", "mlp_down_proj", "mlp_act",
    "input_layernorm", "post_attention_layernorm", "add",
)
ATTENTION_PROFILE_OPS = ("attn_prefill", "attn_decode", "attn_kv_cache_save")


def _stat_columns(op: str, what: str, nullable: bool = False) -> tuple[Column, ...]:
    return tuple(
        Column(f"time_stats.{op}.{s}", "float", "ms", f"{s} of {what}", nullable=nullable, min=0) for s in PROFILE_STATS
    )


MLP_PROFILE = register_table(TableSchema(
    name="mlp_profile",
    filename="mlp.csv",
    spec_file="profiling_root.md",
    description="Vidur's compute profile: one row per num_tokens, per-layer operator times (non-layer costs folded in).",
    columns=(
        Column("num_tokens", "int", "tokens", "Tokens in the iteration (all requests)", min=1),
        Column("n_head", "int", "-", "Query heads (Vidur filter column)", min=1),
        Column("n_kv_head", "int", "-", "KV heads (filter)", min=1),
        Column("n_embd", "int", "-", "Hidden size (filter)", min=1),
        Column("n_expanded_embd", "int", "-", "MLP intermediate size (filter)", min=1),
        Column("vocab_size", "int", "-", "Vocabulary size (filter)", min=1),
        Column("use_gated_mlp", "bool", "-", "Gated (SwiGLU) MLP (filter)"),
        Column("num_tensor_parallel_workers", "int", "-", "Tensor-parallel degree (filter; always 1)", min=1),
        *(c for op in MLP_PROFILE_OPS for c in _stat_columns(op, f"{op} per layer")),
    ),
    key=("num_tokens",),
))

ATTENTION_PROFILE = register_table(TableSchema(
    name="attention_profile",
    filename="attention.csv",
    spec_file="profiling_root.md",
    description="Vidur's attention profile: prefill rows (batch 1, chunk + KV already cached) and decode rows (batch x KV).",
    columns=(
        Column("batch_size", "int", "requests", "Requests (1 for prefill rows)", min=1),
        Column("prefill_chunk_size", "int", "tokens", "Prompt tokens of the chunk; 0 on decode rows", min=0),
        Column("kv_cache_size", "int", "tokens", "KV tokens already cached before this iteration (per request)", min=0),
        Column("is_prefill", "bool", "-", "Prefill row (else decode)"),
        Column("n_embd", "int", "-", "Hidden size (filter)", min=1),
        Column("n_q_head", "int", "-", "Query heads (filter)", min=1),
        Column("n_kv_head", "int", "-", "KV heads (filter)", min=1),
        Column("block_size", "int", "tokens", "KV block size of the backend (filter)", min=1),
        Column("num_tensor_parallel_workers", "int", "-", "Tensor-parallel degree (filter; always 1)", min=1),
        Column("max_model_len", "int", "tokens", "Largest context the grid covers", min=1),
        Column("attention_backend", "str", "-", "The attention implementation timed (sdpa, eager, ...)"),
        *_stat_columns("attn_prefill", "prefill attention per layer (empty on decode rows)", nullable=True),
        *_stat_columns("attn_decode", "decode attention per layer, per-request costs folded in (empty on prefill rows)", nullable=True),
        *_stat_columns("attn_kv_cache_save", "KV-cache write per layer (Vidur 0.0.26 leaves it out of the total)"),
    ),
    key=("batch_size", "prefill_chunk_size", "kv_cache_size"),
))

ITERATION_PROFILE = register_table(TableSchema(
    name="iteration_profile",
    filename="iterations.csv",
    spec_file="profiling_root.md",
    description="Whole-iteration wall times of the backend for fixed batch shapes: 'fit' rows calibrate the correction, "
                "'validation' rows choose the variant, 'test' rows only check ('held_out' in bundles built before the three "
                "sets: their test rows).",
    columns=(
        Column("shape", "str", "-", "Batch shape: prefill:<chunk>[@<kv>], decode:<batch>x<kv>, mixed:<chunk>[@<kv>]+<batch>x<kv>"),
        Column("role", "str", "-", "fit | validation | test (held_out: the test rows of older bundles)"),
        Column("batch_size", "int", "requests", "Requests in the iteration", min=1),
        Column("num_prefill_tokens", "int", "tokens", "Prompt tokens in the iteration", min=0),
        Column("num_decode_tokens", "int", "tokens", "Decode tokens in the iteration", min=0),
        Column("num_samples", "int", "-", "Iterations timed", min=1),
        Column("median_ns", "int", "ns", "Median wall time of one iteration", min=0),
        Column("p10_ns", "int", "ns", "10th percentile", min=0),
        Column("p90_ns", "int", "ns", "90th percentile", min=0),
        Column("trimmed_mean_ns", "int", "ns", "Mean after dropping the lowest and highest 10% of the samples: the fit and "
               "held-out target (bundles built before 2026-11-23 lack it and were fitted on median_ns)", min=0),
        Column("decode_kv_measured", "float", "tokens", "Mean KV per decode request before the timed steps, as they had it "
               "(the shape's KV plus what its first requests decoded while the others prefilled); every prediction of "
               "the shape uses it; empty without decodes (bundles built before issue 16 lack it)", nullable=True, min=0),
        Column("host_median_ns", "int", "ns", "The native engine's host share of a step: on CUDA the median wall time "
               "(timed with the step probe's events off) less the median device time (a round of its own with them "
               "on; bundles up to c33004bb54b8 and 11774aab0cd5: the median of each step's wall less device, both with "
               "the events on), on the CPU the median of each step's wall less its launch's time; empty for other "
               "backends and for bundles built before 2026-12-02", nullable=True),
        Column("packed_at_start", "float", "-", "Share of the timed steps the native engine packed at their start "
               "(it admitted a request that arrived during the step before, or was idle) rather than ahead; empty "
               "where host_median_ns is", nullable=True, min=0),
    ),
    optional=("trimmed_mean_ns", "decode_kv_measured", "host_median_ns", "packed_at_start"),
    key=("shape",),
    invariants=(Invariant("p90_ns >= median_ns >= p10_ns", lambda df: ((df["p90_ns"] < df["median_ns"]) | (df["median_ns"] < df["p10_ns"])).to_numpy(dtype=bool)),),
))

HELD_OUT_CHECK = register_table(TableSchema(
    name="held_out_check",
    filename="held_out_check.csv",
    spec_file="profiling_root.md",
    description="Test batch shapes (held out: never fitted, never used to choose): the measured step against Vidur's own "
                "predictor reading this bundle, and against the two baselines fitted on the fit shapes (bundles built "
                "before issue 16 lack the baselines).",
    columns=(
        Column("shape", "str", "-", "Batch shape (as in iterations.csv, role test; held_out in older bundles)"),
        Column("measured_ns", "int", "ns", "Measured wall time of the iteration: iterations.csv's trimmed_mean_ns (median_ns in bundles built before 2026-11-23)", min=0),
        Column("predicted_ns", "int", "ns", "Vidur's predicted iteration time (its roundings included)", min=0),
        Column("error_pct", "float", "%", "100 * (predicted - measured) / measured"),
        Column("constant_ns", "int", "ns", "The constant baseline: the median measured step of the fit shapes", min=0),
        Column("constant_error_pct", "float", "%", "100 * (constant - measured) / measured"),
        Column("linear_ns", "int", "ns", "The linear baseline: least squares of the fit shapes' steps on their tokens", min=0),
        Column("linear_error_pct", "float", "%", "100 * (linear - measured) / measured"),
    ),
    optional=("constant_ns", "constant_error_pct", "linear_ns", "linear_error_pct"),
    key=("shape",),
))

VALIDATION_CHECK = register_table(TableSchema(
    name="validation_check",
    filename="validation_check.csv",
    spec_file="profiling_root.md",
    description="Validation batch shapes: the measured step against each variant's prediction; the variant with the "
                "lowest median |error| is the bundle (bundles built before issue 16 lack this file).",
    columns=(
        Column("shape", "str", "-", "Batch shape (as in iterations.csv, role validation)"),
        Column("variant", "str", "-", "operators | step | fold (profile.variants)"),
        Column("measured_ns", "int", "ns", "Measured wall time of the iteration (trimmed mean)", min=0),
        Column("predicted_ns", "int", "ns", "The variant's predicted iteration time", min=0),
        Column("error_pct", "float", "%", "100 * (predicted - measured) / measured"),
    ),
    key=("shape", "variant"),
))


# --- compare-runs ---
def _cmp_metric(desc: str = "Metric: ttft, tpot, itl, e2e or e2e_per_token (specs/comparison.md)") -> Column:
    return Column("metric", "str", "-", desc)


COMPARISON_STATS = register_table(TableSchema(
    name="comparison_stats",
    filename="stats.csv",
    spec_file="comparison.md",
    description="One row per metric and statistic: the real and simulated value side by side.",
    columns=(
        _cmp_metric(),
        Column("unit", "str", "-", "Unit of real, sim and diff (ns, or ns/token for e2e_per_token)"),
        Column("statistic", "str", "-", "mean, or p<q> for the q-th percentile (linear interpolation)"),
        Column("real", "float", "unit", "The statistic over the real run's values; empty when no value is defined", nullable=True),
        Column("sim", "float", "unit", "The statistic over the simulated run's values; empty when no value is defined", nullable=True),
        Column("diff", "float", "unit", "sim - real", nullable=True),
        Column("error_pct", "float", "%", "Signed error 100 * (sim - real) / real; empty where real is 0", nullable=True),
    ),
    key=("metric", "statistic"),
))

COMPARISON_PHASE_STATS = register_table(TableSchema(
    name="comparison_phase_stats",
    filename="phase_stats.csv",
    spec_file="comparison.md",
    description="Workloads in phases only: stats.csv for the requests of each phase (requests numbered by arrival).",
    columns=(
        Column("phase", "int", "-", "0, 1, ... as in workload_meta.json phases", min=0),
        *COMPARISON_STATS.columns,
    ),
    key=("phase", "metric", "statistic"),
))

COMPARISON_DISTRIBUTION = register_table(TableSchema(
    name="comparison_distribution",
    filename="distribution.csv",
    spec_file="comparison.md",
    description="One row per metric: how far apart the two distributions and the paired values are.",
    columns=(
        _cmp_metric(),
        Column("unit", "str", "-", "Unit of wasserstein"),
        Column("n_pairs", "int", "-", "Paired values compared (requests, or token gaps for itl)", min=0),
        Column("n_excluded", "int", "-", "Pairs where the metric is undefined (tpot of one-token outputs): counted, not used", min=0),
        Column("ks_statistic", "float", "-", "Two-sample Kolmogorov-Smirnov statistic (largest ECDF gap)", nullable=True, min=0),
        Column("wasserstein", "float", "unit", "Wasserstein-1 distance between the two distributions", nullable=True, min=0),
        Column("paired_abs_err_p50_pct", "float", "%", "Median over pairs of 100 * abs(sim - real) / real (pairs with real > 0)", nullable=True, min=0),
        Column("paired_abs_err_p90_pct", "float", "%", "P90 over pairs of 100 * abs(sim - real) / real (pairs with real > 0)", nullable=True, min=0),
    ),
    key=("metric",),
))

COMPARISON_REQUESTS = register_table(TableSchema(
    name="comparison_requests",
    filename="requests.csv",
    spec_file="comparison.md",
    description="One row per request finished in both runs: each metric real and simulated, over the same tokens.",
    columns=(
        _rid(),
        Column("real_tokens", "int", "tokens", "Tokens the real run produced", min=1),
        Column("sim_tokens", "int", "tokens", "Tokens the simulated run produced", min=1),
        Column("tokens_compared", "int", "tokens", "min(real_tokens, sim_tokens): the series are cut to this (early stop)", min=1),
        Column("ttft_real_ns", "int", "ns", "Real TTFT", min=0),
        Column("ttft_sim_ns", "int", "ns", "Simulated TTFT", min=0),
        Column("tpot_real_ns", "float", "ns", "Real TPOT over the compared tokens; empty when tokens_compared = 1", nullable=True, min=0),
        Column("tpot_sim_ns", "float", "ns", "Simulated TPOT over the compared tokens; empty when tokens_compared = 1", nullable=True, min=0),
        Column("e2e_real_ns", "int", "ns", "Real E2E up to the last compared token", min=0),
        Column("e2e_sim_ns", "int", "ns", "Simulated E2E up to the last compared token", min=0),
        Column("e2e_per_token_real_ns", "float", "ns/token", "e2e_real_ns / tokens_compared", min=0),
        Column("e2e_per_token_sim_ns", "float", "ns/token", "e2e_sim_ns / tokens_compared", min=0),
    ),
    key=("request_id",),
    invariants=(Invariant("tokens_compared = min(real_tokens, sim_tokens)", lambda df: (
        df["tokens_compared"] != np.minimum(df["real_tokens"], df["sim_tokens"])).to_numpy(dtype=bool)),),
))

COMPARISON_ITERATION_PAIRS = register_table(TableSchema(
    name="comparison_iteration_pairs",
    filename="iteration_pairs.csv",
    spec_file="comparison.md",
    description="One row per real iteration matched to a simulated one with the same batch composition.",
    columns=(
        Column("real_iteration_id", "int", "-", "iteration_id in the real run's iteration_metrics.csv", min=0),
        Column("sim_iteration_id", "int", "-", "iteration_id in the simulated run's iteration_metrics.csv", min=0),
        Column("batch_size", "int", "requests", "Requests in the step", min=1),
        Column("num_prefill_tokens", "int", "tokens", "Prompt tokens in the step", min=0),
        Column("num_decode_tokens", "int", "tokens", "Decode tokens in the step", min=0),
        Column("real_step_ns", "int", "ns", "Real end_time_ns - start_time_ns", min=0),
        Column("sim_step_ns", "int", "ns", "Simulated end_time_ns - start_time_ns", min=0),
    ),
    key=("real_iteration_id",),
))

COMPARISON_ITERATION_ERROR = register_table(TableSchema(
    name="comparison_iteration_error",
    filename="iteration_error.csv",
    spec_file="comparison.md",
    description="Step-time error of matched iterations grouped by batch size, decode tokens and a prefill-token bin.",
    columns=(
        Column("batch_size", "int", "requests", "Requests in the step", min=1),
        Column("num_decode_tokens", "int", "tokens", "Decode tokens in the step", min=0),
        Column("prefill_lo", "int", "tokens", "Prefill tokens of the step are >= prefill_lo", min=0),
        Column("prefill_hi", "int", "tokens", "... and < prefill_hi; empty for the open last bin", nullable=True, min=0),
        Column("n_matched", "int", "-", "Matched iteration pairs in the group", min=1),
        Column("real_step_mean_ns", "float", "ns", "Mean real step time", min=0),
        Column("sim_step_mean_ns", "float", "ns", "Mean simulated step time", min=0),
        Column("error_pct", "float", "%", "Signed error of the means, 100 * (sim - real) / real", nullable=True),
        Column("paired_abs_err_p50_pct", "float", "%", "Median over pairs of 100 * abs(sim - real) / real", nullable=True, min=0),
    ),
    key=("batch_size", "num_decode_tokens", "prefill_lo"),
))

ERROR_RECORDS = register_table(TableSchema(
    name="error_records",
    filename="error_records.csv",
    spec_file="comparison.md",
    description="One row per metric (e2e, ttft, itl) and statistic (mean, p90, p99), in the layout of the error_records.csv "
                "of the inference-sim sim-to-real-accuracy-validation study, so the two can be read side by side.",
    columns=(
        Column("simulator", "str", "-", "The simulator: vidur"),
        Column("experiment_folder", "str", "-", "The comparison's id"),
        Column("model", "str", "-", "The model's Hugging Face id"),
        Column("workload", "str", "-", "The workload's id"),
        Column("stage_index", "int", "-", "-1: the whole run (the study's summary rows); a run here has one stage"),
        Column("metric_name", "str", "-", "<metric>_<statistic>: e2e_mean, e2e_p90, e2e_p99, ttft_mean, ..., itl_p99"),
        Column("predicted", "float", "ms", "The simulated value"),
        Column("actual", "float", "ms", "The real value"),
        Column("mape", "float", "%", "Absolute percentage error 100 * abs(predicted - actual) / actual"),
        Column("mpe", "float", "%", "Signed percentage error 100 * (predicted - actual) / actual"),
        Column("absolute_error", "float", "ms", "abs(predicted - actual)", min=0),
        Column("exp_id", "int", "-", "The study's experiment number; empty here", nullable=True),
        Column("hardware", "str", "-", "The hardware config's name, upper-cased (H100, H200, ...)"),
        Column("dp", "int", "-", "Data-parallel degree; empty (none)", nullable=True),
        Column("cpu_offload", "bool", "-", "KV-cache offload to the CPU (never, here)"),
        Column("gpu_mem_util", "float", "-", "The server's GPU memory share; empty (not known for every backend)", nullable=True),
        Column("precision", "str", "-", "The model's dtype: BF16, FP16 or FP32"),
        Column("tp", "int", "-", "Tensor-parallel degree (1)", min=1),
        Column("max_num_batched_tokens", "int", "tokens", "The simulated token budget per iteration; empty when whole prompts", nullable=True, min=1),
    ),
    key=("metric_name",),
))

COMPARISON_SWEEP = register_table(TableSchema(
    name="comparison_sweep",
    filename="sweep.csv",
    spec_file="comparison.md",
    description="Sweep mode: one row per comparison, metric and statistic, with the load it was measured at.",
    columns=(
        Column("comparison_id", "str", "-", "The comparison directory's id"),
        Column("load_qps", "float", "requests/s", "Offered load: the workload's configured QPS, else the arrivals' rate", min=0),
        Column("load_source", "str", "-", "Where load_qps came from: workload_config or offered_rate"),
        _cmp_metric(),
        Column("unit", "str", "-", "Unit of real and sim"),
        Column("statistic", "str", "-", "mean or p<q>"),
        Column("real", "float", "unit", "Real value"),
        Column("sim", "float", "unit", "Simulated value"),
        Column("error_pct", "float", "%", "100 * (sim - real) / real; empty where real is 0", nullable=True),
    ),
    key=("comparison_id", "metric", "statistic"),
))


# --- vidur-profile: raw operator rows ---
# The operator rows as measured, before the fold (same columns as mlp.csv / attention.csv), so that a bundle
# can be re-folded offline from its own files.
MLP_RAW_PROFILE = register_table(TableSchema(
    name="mlp_raw_profile",
    filename="mlp_raw.csv",
    spec_file="profiling_root.md",
    description="mlp.csv before the fold: per-layer operator times exactly as measured (nothing scaled or folded in).",
    columns=tuple(
        Column(c.name, c.dtype, c.unit, c.description.replace(" (non-layer costs folded in)", ""), c.nullable, c.min)
        for c in MLP_PROFILE.columns
    ),
    key=MLP_PROFILE.key,
))

ATTENTION_RAW_PROFILE = register_table(TableSchema(
    name="attention_raw_profile",
    filename="attention_raw.csv",
    spec_file="profiling_root.md",
    description="attention.csv before the fold: per-layer attention times exactly as measured (nothing scaled or folded in).",
    columns=tuple(
        Column(c.name, c.dtype, c.unit, c.description.replace(", per-request costs folded in", ", as measured"), c.nullable, c.min)
        for c in ATTENTION_PROFILE.columns
    ),
    key=ATTENTION_PROFILE.key,
))
