"""A workload made of phases (5 then 10 requests/s, scaled down): arrivals phase by phase, and compare-runs gives one
headline per phase as well as the whole, in its summary and tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.schemas import COMPARISON_PHASE_STATS, COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.testing import SyntheticRun, write_run
from gpu_simulate_test.workloads.load import load_workload
from gpu_simulate_test.workloads.spec import generate_workload

PHASES = "workload.arrival.phases=[{qps:5,duration_s:6},{qps:10,duration_s:3}]"  # 30 then 30 requests


def _workload(compose_app: Callable[..., Any], *extra: str) -> Path:
    return generate_workload(compose_app("workload_spec", ["workload=phases", PHASES, "workload.lengths.decode.max=12",
                                                           *extra]))


def test_arrivals_run_phase_by_phase(compose_app) -> None:
    path = _workload(compose_app)
    meta = json.loads((path / "workload_meta.json").read_text())
    assert [(p["first_request_id"], p["num_requests"], p["start_time_ns"], p["end_time_ns"]) for p in meta["phases"]] == [
        (0, 30, 0, 6_000_000_000), (30, 30, 6_000_000_000, 9_000_000_000)]
    arrivals = np.array([r.arrival_time_ns for r in load_workload(path.parent, path.name).requests])
    assert (np.diff(arrivals) >= 0).all() and arrivals[0] == 0 and arrivals[30] == 6_000_000_000
    assert arrivals[29] < 6_000_000_000 and arrivals[-1] < 9_000_000_000  # each phase within its span


@pytest.mark.parametrize("overrides, message", [
    (["workload.num_requests=100"], "workload.num_requests=100 but workload.arrival.phases hold 60 requests"),
    (["workload.arrival.process=all_at_once"], "phases need a rate-driven process"),
    (["workload.arrival.phases=[{qps:0,duration_s:6}]"], r"phases\[0\]: qps=0.0, duration_s=6.0; both must be > 0"),
])
def test_bad_phases_are_one_clear_error(compose_app, overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        _workload(compose_app, *overrides)


def _run(path: Path, factor: np.ndarray) -> SyntheticRun:
    """One request at a time would not keep up; times are synthetic: 20 ms to the first token, then 5 ms per token,
    every duration since arrival multiplied by the request's factor."""
    w = load_workload(path.parent, path.name)
    arrival = np.array([r.arrival_time_ns for r in w.requests], dtype=np.int64)
    counts = np.array([r.num_decode_tokens for r in w.requests], dtype=np.int64)
    since = np.concatenate([20_000_000 + 5_000_000 * np.arange(n) for n in counts])
    times = np.repeat(arrival, counts) + np.rint(since * np.repeat(factor, counts)).astype(np.int64)
    prefill = np.array([r.num_prefill_tokens for r in w.requests], dtype=np.int64)
    return SyntheticRun(arrival, counts, times, prefill, counts.copy())


def test_one_headline_per_phase_as_well_as_the_whole(compose_app, tmp_path: Path) -> None:
    path = _workload(compose_app)
    n = 60
    write_run(tmp_path / "real_runs", "real-1", "real_run", path.name, _run(path, np.ones(n)), with_iterations=False)
    sim_factor = np.where(np.arange(n) < 30, 1.1, 1.3)  # the simulation misses by 10% in phase 1, 30% in phase 2
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", path.name, _run(path, sim_factor), with_iterations=False)
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1"]))
    per_phase = read_table(out / "tables" / "phase_stats.csv", COMPARISON_PHASE_STATS)
    whole = read_table(out / "tables" / "stats.csv", COMPARISON_STATS).set_index(["metric", "statistic"])
    for phase, err in ((0, 10.0), (1, 30.0)):
        rows = per_phase[(per_phase["phase"] == phase) & per_phase["metric"].isin(["ttft", "tpot", "e2e"])]
        assert len(rows) == 3 * 5 and np.allclose(rows["error_pct"], err, atol=0.01)
    e2e_p50 = whole.loc[("e2e", "p50"), "error_pct"]
    assert 10.0 < e2e_p50 < 30.0  # the whole mixes both
    meta = read_meta(out / "comparison_meta.json")
    assert [(p["phase"], p["qps"], p["requests_compared"]) for p in meta["phases"]] == [(0, 5.0, 30), (1, 10.0, 30)]
    assert meta["load"]["source"] == "offered_rate"  # several rates: the configured qps says nothing
    summary = (out / "summary.md").read_text()
    assert "### Phase 1: 5 requests/s for 6 s (30 of 30 requests compared)" in summary
    assert "### Phase 2: 10 requests/s for 3 s (30 of 30 requests compared)" in summary
    assert summary.index("## Headline") < summary.index("## Per phase") < summary.index("## Verdicts")


def test_no_phase_table_for_a_workload_in_one_piece(compose_app, tmp_path: Path) -> None:
    path = generate_workload(compose_app("workload_spec", ["workload.num_requests=10"]))
    write_run(tmp_path / "real_runs", "real-1", "real_run", path.name, _run(path, np.ones(10)), with_iterations=False)
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", path.name, _run(path, np.ones(10)), with_iterations=False)
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1"]))
    assert not (out / "tables" / "phase_stats.csv").exists() and read_meta(out / "comparison_meta.json")["phases"] == []
    assert "## Per phase" not in (out / "summary.md").read_text()


def test_experiment_load_sweep_refuses_a_workload_in_phases(compose_app) -> None:
    from gpu_simulate_test.experiment import check_config

    with pytest.raises(InputError, match="workload.arrival.phases set their own"):
        check_config(compose_app("experiment", ["workload=phases", "load.qps=2"]))
