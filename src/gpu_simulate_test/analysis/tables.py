"""The comparison's CSV tables (schemas in :mod:`gpu_simulate_test.io.schemas`, documented in specs/comparison.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.align import PairedRuns
from gpu_simulate_test.analysis.iterations import IterationMatch
from gpu_simulate_test.analysis.metrics import (
    MetricValues,
    e2e,
    e2e_per_token,
    ks_statistic,
    paired_abs_error_pct,
    signed_error_pct,
    statistic_names,
    summary_statistics,
    tpot,
    ttft,
    wasserstein,
)
from gpu_simulate_test.io.schemas import (
    COMPARISON_DISTRIBUTION,
    COMPARISON_ITERATION_ERROR,
    COMPARISON_ITERATION_PAIRS,
    COMPARISON_PHASE_STATS,
    COMPARISON_REQUESTS,
    COMPARISON_STATS,
    ERROR_RECORDS,
)
from gpu_simulate_test.io.tables import write_table

TABLES_DIR = "tables"


def _nullable(values: list[Optional[float]]) -> pd.Series:
    return pd.Series([np.nan if v is None or not np.isfinite(v) else v for v in values], dtype="float64")


def stats_and_distribution(values: dict[str, MetricValues], percentiles: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``stats.csv`` (metric x statistic) and ``distribution.csv`` (metric) frames."""
    names = statistic_names(percentiles)
    stat_rows, dist_rows = [], []
    for name, mv in values.items():
        real_sorted, sim_sorted = np.sort(mv.real), np.sort(mv.sim)
        real_stats = summary_statistics(real_sorted, percentiles)
        sim_stats = summary_statistics(sim_sorted, percentiles)
        errs = signed_error_pct(real_stats, sim_stats)
        for stat, r, s, e in zip(names, real_stats, sim_stats, errs):
            stat_rows.append((name, mv.metric.unit, stat, r, s, s - r, e))
        empty = len(mv.real) == 0
        p50, p90 = paired_abs_error_pct(mv.real, mv.sim)
        dist_rows.append(
            {
                "metric": name,
                "unit": mv.metric.unit,
                "n_pairs": len(mv.real),
                "n_excluded": mv.excluded,
                "ks_statistic": None if empty else ks_statistic(real_sorted, sim_sorted),
                "wasserstein": None if empty else wasserstein(real_sorted, sim_sorted),
                "paired_abs_err_p50_pct": p50,
                "paired_abs_err_p90_pct": p90,
            }
        )
    stats = pd.DataFrame(stat_rows, columns=["metric", "unit", "statistic", "real", "sim", "diff", "error_pct"])
    dist = pd.DataFrame(dist_rows)
    for col in ("ks_statistic", "wasserstein", "paired_abs_err_p50_pct", "paired_abs_err_p90_pct"):
        dist[col] = _nullable(dist[col].tolist())
    return stats, dist


def requests_frame(pair: PairedRuns) -> pd.DataFrame:
    """Per-request paired metrics over the compared (possibly truncated) tokens."""
    r, s = pair.real_tokens, pair.sim_tokens
    return pd.DataFrame(
        {
            "request_id": pair.request_ids,
            "real_tokens": pair.real_counts_full,
            "sim_tokens": pair.sim_counts_full,
            "tokens_compared": r.tokens,
            "ttft_real_ns": ttft(r).astype(np.int64),
            "ttft_sim_ns": ttft(s).astype(np.int64),
            "tpot_real_ns": tpot(r),
            "tpot_sim_ns": tpot(s),
            "e2e_real_ns": e2e(r).astype(np.int64),
            "e2e_sim_ns": e2e(s).astype(np.int64),
            "e2e_per_token_real_ns": e2e_per_token(r),
            "e2e_per_token_sim_ns": e2e_per_token(s),
        }
    )


def write_comparison_tables(
    dest: Path, stats: pd.DataFrame, dist: pd.DataFrame, requests: pd.DataFrame, iterations: Optional[IterationMatch],
    error_records: pd.DataFrame, phase_stats: Optional[pd.DataFrame] = None,
) -> dict[str, pd.DataFrame]:
    """Validate and write every table under ``dest/tables``; returns what was written, by schema name."""
    out_dir = Path(dest) / TABLES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [(COMPARISON_STATS, stats), (COMPARISON_DISTRIBUTION, dist), (COMPARISON_REQUESTS, requests),
              (ERROR_RECORDS, error_records)]
    if iterations is not None:
        frames += [(COMPARISON_ITERATION_PAIRS, iterations.pairs), (COMPARISON_ITERATION_ERROR, iterations.by_shape)]
    if phase_stats is not None:
        frames.append((COMPARISON_PHASE_STATS, phase_stats))
    return {schema.name: write_table(df, out_dir / schema.filename, schema) for schema, df in frames}
