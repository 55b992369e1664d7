"""A real run from per-request results only (TTFT, E2E, output length; no token times): imported with its
token-level metrics marked unavailable, compared on what it allows, and the summary says what it does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.request_import import import_request_results
from gpu_simulate_test.errors import GstError, OutputExistsError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import COMPARISON_DISTRIBUTION, COMPARISON_REQUESTS, COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.testing import SyntheticRun, make_workload, sequential_run, write_run

N = 30


def _setup(tmp_path: Path) -> tuple[SyntheticRun, SyntheticRun]:
    real = sequential_run(N, np.random.default_rng(3).integers(1, 20, N), seed=3)
    make_workload(tmp_path / "workloads", "wl", list(zip(real.arrival_ns.tolist(), real.num_prefill.tolist(),
                                                         real.num_decode.tolist())))
    write_run(tmp_path / "real_runs", "real-tokens", "real_run", "wl", real)
    sim = real.scaled(1.1)
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", "wl", sim)
    return real, sim


def _csv(tmp_path: Path, run: SyntheticRun, **columns: Any) -> Path:
    """The per-request table a benchmark summary gives: no token times."""
    off = run.offsets
    first, last = run.times_ns[off[:-1]], run.times_ns[off[1:] - 1]
    df = pd.DataFrame({"request_id": np.arange(len(run.counts)), "ttft_ms": (first - run.arrival_ns) / 1e6,
                       "e2e_ms": (last - run.arrival_ns) / 1e6, "output_tokens": run.counts, **columns})
    path = tmp_path / "per_request.csv"
    df.to_csv(path, index=False, float_format="%.6f")
    return path


def _import(compose_app: Callable[..., Any], csv: Path, *extra: str) -> Path:
    return import_request_results(compose_app("compare_runs", ["mode=import_requests", f"requests_csv={csv}",
                                                               "workload_id=wl", *extra]))


def test_per_request_results_become_a_run_without_token_times(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path)
    path = _import(compose_app, _csv(tmp_path, real))
    assert not (path / "token_metrics.csv").exists()
    run = load_run(path, "real_run")
    assert run.tokens is None and run.meta["token_metrics"] == "unavailable" and run.complete
    full = load_run(tmp_path / "real_runs" / "real-tokens")
    pd.testing.assert_frame_equal(run.requests, full.requests)  # TTFT, TPOT and E2E exactly as from token times


def test_reimporting_the_same_file_is_a_no_op(compose_app, tmp_path: Path) -> None:
    """As for a vLLM file: the same content for the same workload finds the run it made; other content under that
    run id is refused."""
    real, _ = _setup(tmp_path)
    csv = _csv(tmp_path, real)
    first = _import(compose_app, csv)
    written = (first / "run_meta.json").stat().st_mtime_ns
    assert _import(compose_app, csv) == first and (first / "run_meta.json").stat().st_mtime_ns == written
    _csv(tmp_path, real.scaled(1.5))
    with pytest.raises(OutputExistsError, match="exists already"):
        _import(compose_app, csv, f"run_id={first.name}")


def test_comparison_compares_what_it_can_and_says_what_it_cannot(compose_app, tmp_path: Path) -> None:
    real, sim = _setup(tmp_path)
    per_request = _import(compose_app, _csv(tmp_path, real)).name
    a = compare_runs(compose_app("compare_runs", [f"real_run={per_request}", "sim_run=sim-1"]))
    b = compare_runs(compose_app("compare_runs", ["real_run=real-tokens", "sim_run=sim-1"]))
    sa = read_table(a / "tables" / "stats.csv", COMPARISON_STATS)
    sb = read_table(b / "tables" / "stats.csv", COMPARISON_STATS)
    assert set(sa["metric"]) == {"ttft", "tpot", "e2e", "e2e_per_token"}  # no ITL without token times
    pd.testing.assert_frame_equal(sa.reset_index(drop=True), sb[sb["metric"] != "itl"].reset_index(drop=True))
    assert "itl" not in set(read_table(a / "tables" / "distribution.csv", COMPARISON_DISTRIBUTION)["metric"])
    pd.testing.assert_frame_equal(read_table(a / "tables" / "requests.csv", COMPARISON_REQUESTS),
                                  read_table(b / "tables" / "requests.csv", COMPARISON_REQUESTS))
    meta = read_meta(a / "comparison_meta.json")
    assert set(meta["unavailable_metrics"]) == {"itl"} and read_meta(b / "comparison_meta.json")["unavailable_metrics"] == {}
    summary = (a / "summary.md").read_text()
    assert "not compared: ITL, because the real run has per-request results only (no token times)" in summary
    assert sorted(p.name for p in (a / "figs").iterdir()) == ["cdf.png", "scatter.png", "timeline.png"]


def test_early_stop_cuts_the_simulated_series_but_never_a_per_request_one(compose_app, tmp_path: Path) -> None:
    real, sim = _setup(tmp_path)
    stopped = real.truncated(np.maximum(real.counts - 2, 1))
    per_request = _import(compose_app, _csv(tmp_path, stopped)).name
    out = compare_runs(compose_app("compare_runs", [f"real_run={per_request}", "sim_run=sim-1"]))
    req = read_table(out / "tables" / "requests.csv", COMPARISON_REQUESTS)
    assert (req["tokens_compared"] == stopped.counts).all() and (req["sim_tokens"] == sim.counts).all()
    # the other way round a per-request series would have to be cut: refused, not guessed
    write_run(tmp_path / "vidur_runs", "sim-short", "vidur_run", "wl", real.truncated(np.maximum(real.counts - 3, 1)))
    full = _import(compose_app, _csv(tmp_path, real), "run_id=full-per-request").name
    with pytest.raises(GstError, match="has per-request results only, so its .* tokens cannot be cut"):
        compare_runs(compose_app("compare_runs", [f"real_run={full}", "sim_run=sim-short", "comparison_id=c2"]))


def test_failed_and_missing_requests_make_the_run_incomplete(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path)
    csv = _csv(tmp_path, real, error=["" if i % 10 else "timeout" for i in range(N)])
    df = pd.read_csv(csv, keep_default_na=False)
    df.iloc[:-1].to_csv(csv, index=False)  # the last request is not in the file at all
    run = load_run(_import(compose_app, csv))
    assert not run.complete and run.meta["left_out"] == 4 and len(run.requests) == N - 4


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns=["e2e_ms"]), r"missing column\(s\) \['e2e_ms'\]"),
    (lambda df: df.assign(request_id=df["request_id"] + 1000), "request_id 1000 is not a request of workload 'wl'"),
    (lambda df: df.assign(output_tokens=df["output_tokens"] + 100), "output_tokens is .*, expected a whole 1.."),
    (lambda df: df.assign(ttft_ms=df["e2e_ms"] + 1), "need 0 <= ttft_ms <= e2e_ms"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "request_id 0 appears twice"),
    (lambda df: df.assign(ttft_ms=["x"] * len(df)), "line 2, column 'ttft_ms': 'x' is not a number"),
])
def test_bad_files_are_one_clear_error(compose_app, tmp_path: Path, change: Callable, message: str) -> None:
    real, _ = _setup(tmp_path)
    csv = _csv(tmp_path, real)
    change(pd.read_csv(csv)).to_csv(csv, index=False)
    with pytest.raises(GstError, match=message) as err:
        _import(compose_app, csv)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "real_runs").iterdir()) == ["real-tokens"]  # nothing written
