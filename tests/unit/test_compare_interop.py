"""compare-runs beside other tools: error_records.csv in the sim-to-real-accuracy-validation layout, and runs whose
series hold only some token times (imports without per-token times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.align import load_pair
from gpu_simulate_test.analysis.metrics import e2e, itl, tpot, ttft
from gpu_simulate_test.cli.compare_runs import run_mode
from gpu_simulate_test.io.meta import build_meta, read_meta
from gpu_simulate_test.io.outputs import atomic_dir
from gpu_simulate_test.io.runs import RequestRecord, tables_from_records, write_run_meta, write_run_tables
from gpu_simulate_test.io.schemas import COMPARISON_STATS, ERROR_RECORDS
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.testing import sequential_run, write_run

Compose = Callable[..., Any]
# The header of results_trainval/error_records.csv in github.com/inference-sim/sim-to-real-accuracy-validation.
STUDY_HEADER = ("simulator,experiment_folder,model,workload,stage_index,metric_name,predicted,actual,mape,mpe,absolute_error,"
                "exp_id,hardware,dp,cpu_offload,gpu_mem_util,precision,tp,max_num_batched_tokens")
SIM_CONFIG = {"model": {"name": "qwen3-0.6b", "hf_id": "Qwen/Qwen3-0.6B", "dtype": "bfloat16"}, "hardware": {"name": "h200"},
              "backend": {"name": "openai", "max_batch_tokens": 8192}}


def test_error_records_have_the_study_layout_and_our_errors(compose_app: Compose, tmp_path: Path) -> None:
    run = sequential_run(20, 6, seed=1)
    write_run(tmp_path / "real_runs", "r", "real_run", "wl", run, with_iterations=False)
    write_run(tmp_path / "vidur_runs", "s", "vidur_run", "wl", run.scaled(1.1), with_iterations=False, config=SIM_CONFIG)
    run_mode(compose_app("compare_runs", ["real_run=r", "sim_run=s"]))
    out = tmp_path / "comparisons" / "cmp-r--s"
    path = out / "tables" / ERROR_RECORDS.filename
    assert path.read_text().splitlines()[0] == STUDY_HEADER
    rec = read_table(path, ERROR_RECORDS)
    assert rec["metric_name"].tolist() == [f"{m}_{s}" for m in ("e2e", "ttft", "itl") for s in ("mean", "p90", "p99")]
    # every latency since arrival is 10% longer in the simulation, so every error is +10%
    assert np.allclose(rec["mpe"], 10.0, atol=0.01) and np.allclose(rec["mape"], 10.0, atol=0.01)
    stats = read_table(out / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS).set_index(["metric", "statistic"])
    row = rec.set_index("metric_name").loc["ttft_p90"]
    assert row["actual"] == stats.loc[("ttft", "p90"), "real"] / 1e6 and row["predicted"] == stats.loc[("ttft", "p90"), "sim"] / 1e6
    assert row["absolute_error"] == abs(row["predicted"] - row["actual"])
    assert (row["simulator"], row["model"], row["workload"], row["stage_index"], row["hardware"], row["precision"], row["tp"],
            row["max_num_batched_tokens"]) == ("vidur", "Qwen/Qwen3-0.6B", "wl", -1, "H200", "BF16", 1, 8192)
    assert pd.isna(row["exp_id"]) and pd.isna(row["dp"]) and not row["cpu_offload"]
    assert "tables/error_records.csv" in (out / "summary.md").read_text()


def _partial_real_run(root: Path, keep_every: list[bool]) -> None:
    """Requests of 5 tokens, 10 ms apart after a 20 ms TTFT; where ``keep_every`` is False only tokens 0 and 4 have times."""
    records = []
    for i, full in enumerate(keep_every):
        arrival = i * 1_000_000_000
        times = [arrival + 20_000_000 + k * 10_000_000 for k in range(5)]
        records.append(RequestRecord(i, arrival, arrival, 8, 5, times if full else [times[0], times[4]], None if full else [0, 4]))
    requests, tokens = tables_from_records(records)
    with atomic_dir(root / "real_runs" / "imp") as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(kind="real_run", id="imp", config={}, inputs={"workload_id": "wl"}))


def test_partial_series_compare_exactly_where_they_can(compose_app: Compose, tmp_path: Path) -> None:
    _partial_real_run(tmp_path, [True, False, True, False])
    sims = []
    for i, n in enumerate([5, 5, 4, 4]):  # requests 2 and 3 end earlier in the simulation
        arrival = i * 1_000_000_000
        sims.append(RequestRecord(i, arrival, arrival, 8, 5, [arrival + 22_000_000 + k * 11_000_000 for k in range(n)]))
    requests, tokens = tables_from_records(sims)
    with atomic_dir(tmp_path / "vidur_runs" / "sim") as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(kind="vidur_run", id="sim", config={}, inputs={"workload_id": "wl"}))
    run_mode(compose_app("compare_runs", ["real_run=imp", "sim_run=sim"]))
    out = tmp_path / "comparisons" / "cmp-imp--sim"
    meta = read_meta(out / "comparison_meta.json", "comparison")
    # request 3 has only its first and last real times and would need a cut to the simulation's 4 tokens: left out
    assert meta["counts"]["requests_compared"] == 3
    assert (meta["caveats"]["left_out_uncut"], meta["caveats"]["partial_real"], meta["caveats"]["itl_requests"]) == (1, 1, 2)
    stats = read_table(out / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS).set_index(["metric", "statistic"])
    # TPOT uses every request (exact from first and last); ITL pairs the 2 with every time: 10 ms real, 11 ms simulated
    assert stats.loc[("tpot", "mean"), "real"] == 10_000_000 and stats.loc[("tpot", "mean"), "sim"] == 11_000_000
    assert stats.loc[("itl", "p50"), "real"] == 10_000_000 and stats.loc[("itl", "p50"), "sim"] == 11_000_000
    summary = (out / "summary.md").read_text()
    assert "ITL compared over 2 of 3 requests: 1 real and 0 simulated series have only some token times" in summary
    assert "left out: 1 requests whose series without per-token times would need a cut" in summary


def test_a_subset_of_pairs_keeps_each_series_as_it_was(tmp_path: Path) -> None:
    """Per-phase tables compare subsets of the pairs: a series with only some token times stays so in a subset."""
    _partial_real_run(tmp_path, [True, False, True, False])
    sims = [RequestRecord(i, i * 1_000_000_000, i * 1_000_000_000, 8, 5,
                          [i * 1_000_000_000 + 22_000_000 + k * 11_000_000 for k in range(5)]) for i in range(4)]
    requests, tokens = tables_from_records(sims)
    with atomic_dir(tmp_path / "vidur_runs" / "sim") as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(kind="vidur_run", id="sim", config={}, inputs={"workload_id": "wl"}))
    pair = load_pair(tmp_path / "real_runs", tmp_path / "vidur_runs", "imp", "sim", allow_incomplete=False)
    keep = np.array([False, True, True, False])
    sub = pair.subset(keep)
    assert sub.request_ids.tolist() == [1, 2] and sub.real_tokens.index.tolist() == [0, 4, 0, 1, 2, 3, 4]
    assert sub.real_tokens.complete.tolist() == [False, True] and (sub.partial_real, sub.partial_sim) == (1, 0)
    for metric in (ttft, tpot, e2e):
        np.testing.assert_array_equal(metric(sub.real_tokens), metric(pair.real_tokens)[keep])
    assert itl(sub.real_tokens).tolist() == [10_000_000.0] * 4 and itl(sub.sim_tokens).tolist() == [11_000_000.0] * 4
