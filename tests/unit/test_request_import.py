"""A real run from per-request results only (TTFT, E2E, output length; no token times): imported with
``import_format=requests_csv`` as first- and last-token series (nothing interpolated), compared on what they allow,
and the summary says what they do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.run_import import import_run
from gpu_simulate_test.errors import GstError, OutputExistsError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import COMPARISON_DISTRIBUTION, COMPARISON_REQUESTS, COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.testing import SyntheticRun, make_workload, sequential_run, write_run

N = 30


def _setup(tmp_path: Path, fewest_tokens: int = 1) -> tuple[SyntheticRun, SyntheticRun]:
    real = sequential_run(N, np.random.default_rng(3).integers(fewest_tokens, 20, N), seed=3)
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
    return import_run(compose_app("compare_runs", ["mode=import", "import_format=requests_csv", f"import_file={csv}",
                                                   "workload_id=wl", *extra]))


def test_per_request_results_become_first_and_last_token_series(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path)
    run = load_run(_import(compose_app, _csv(tmp_path, real)), "real_run")
    assert run.complete and (run.meta["num_failed"], run.meta["missing"]) == (0, 0)
    full = load_run(tmp_path / "real_runs" / "real-tokens")
    pd.testing.assert_frame_equal(run.requests, full.requests)  # TTFT, TPOT and E2E exactly as from token times
    off = real.offsets
    for rid, g in run.tokens.groupby("request_id"):
        n, times = int(real.counts[rid]), real.times_ns[off[rid]:off[rid + 1]]
        # two tokens or fewer: the first and last are every token; more: only those two, nothing interpolated
        expected = (list(range(n)), times.tolist()) if n <= 2 else ([0, n - 1], [times[0], times[-1]])
        assert (g["token_index"].tolist(), g["token_time_ns"].tolist()) == expected
    longer = int((real.counts > 2).sum())
    assert run.meta["token_times"] == {"every_token": N - longer, "first_and_last_only": longer}


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
    pd.testing.assert_frame_equal(sa[sa["metric"] != "itl"].reset_index(drop=True),
                                  sb[sb["metric"] != "itl"].reset_index(drop=True))
    pd.testing.assert_frame_equal(read_table(a / "tables" / "requests.csv", COMPARISON_REQUESTS),
                                  read_table(b / "tables" / "requests.csv", COMPARISON_REQUESTS))
    # ITL pairs only the requests whose every token time is known: those of one or two tokens (one gap each of two)
    every, two = int((real.counts <= 2).sum()), int((real.counts == 2).sum())
    dist = read_table(a / "tables" / "distribution.csv", COMPARISON_DISTRIBUTION).set_index("metric")
    assert dist.loc["itl", "n_pairs"] == two > 0
    meta = read_meta(a / "comparison_meta.json")
    assert (meta["caveats"]["itl_requests"], meta["caveats"]["partial_real"]) == (every, N - every)
    assert meta["unavailable_metrics"] == {}
    summary = (a / "summary.md").read_text()
    assert (f"ITL compared over {every} of {N} requests: {N - every} real and 0 simulated series have only some token "
            "times") in summary
    assert sorted(p.name for p in (a / "figs").iterdir()) == ["cdf.png", "scatter.png", "timeline.png"]


def test_without_any_request_of_every_token_time_itl_is_not_compared(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path, fewest_tokens=3)
    per_request = _import(compose_app, _csv(tmp_path, real)).name
    a = compare_runs(compose_app("compare_runs", [f"real_run={per_request}", "sim_run=sim-1"]))
    b = compare_runs(compose_app("compare_runs", ["real_run=real-tokens", "sim_run=sim-1"]))
    sa = read_table(a / "tables" / "stats.csv", COMPARISON_STATS)
    sb = read_table(b / "tables" / "stats.csv", COMPARISON_STATS)
    assert set(sa["metric"]) == {"ttft", "tpot", "e2e", "e2e_per_token"}  # no ITL row at all, not a row of NaN
    pd.testing.assert_frame_equal(sa.reset_index(drop=True), sb[sb["metric"] != "itl"].reset_index(drop=True))
    assert "itl" not in set(read_table(a / "tables" / "distribution.csv", COMPARISON_DISTRIBUTION)["metric"])
    assert not any(name.startswith("itl_") for name in pd.read_csv(a / "tables" / "error_records.csv")["metric_name"])
    meta = read_meta(a / "comparison_meta.json")
    assert set(meta["unavailable_metrics"]) == {"itl"} and read_meta(b / "comparison_meta.json")["unavailable_metrics"] == {}
    assert meta["caveats"]["itl_requests"] == 0
    assert "ITL cannot be compared: no request has every token's time in both runs" in (a / "summary.md").read_text()


def test_early_stop_cuts_the_simulated_series_but_never_a_per_request_one(compose_app, tmp_path: Path) -> None:
    real, sim = _setup(tmp_path)
    stopped = real.truncated(np.maximum(real.counts - 2, 1))
    per_request = _import(compose_app, _csv(tmp_path, stopped)).name
    out = compare_runs(compose_app("compare_runs", [f"real_run={per_request}", "sim_run=sim-1"]))
    req = read_table(out / "tables" / "requests.csv", COMPARISON_REQUESTS)
    assert (req["tokens_compared"] == stopped.counts).all() and (req["sim_tokens"] == sim.counts).all()
    # the other way round a first-and-last series would have to be cut: its request is left out, not guessed
    short = np.maximum(real.counts - 3, 1)
    write_run(tmp_path / "vidur_runs", "sim-short", "vidur_run", "wl", real.truncated(short))
    full = _import(compose_app, _csv(tmp_path, real), "run_id=full-per-request").name
    out = compare_runs(compose_app("compare_runs", [f"real_run={full}", "sim_run=sim-short", "comparison_id=c2"]))
    uncut = int(((real.counts > 2) & (short < real.counts)).sum())
    meta = read_meta(out / "comparison_meta.json")
    assert 0 < uncut < N and meta["caveats"]["left_out_uncut"] == uncut
    assert meta["counts"]["requests_compared"] == N - uncut
    assert f"left out: {uncut} requests whose series without per-token times would need a cut" in \
        (out / "summary.md").read_text()


def test_when_every_request_would_need_a_cut_the_comparison_is_refused(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path, fewest_tokens=3)
    write_run(tmp_path / "vidur_runs", "sim-short", "vidur_run", "wl", real.truncated(real.counts - 1))
    full = _import(compose_app, _csv(tmp_path, real)).name
    with pytest.raises(GstError, match=f"each of the {N} requests finished in both has a series without per-token "
                                       "times that would need a cut"):
        compare_runs(compose_app("compare_runs", [f"real_run={full}", "sim_run=sim-short"]))


def test_failed_and_missing_requests_are_left_out_and_counted(compose_app, tmp_path: Path) -> None:
    real, _ = _setup(tmp_path)
    csv = _csv(tmp_path, real, error=["" if i % 10 else "timeout" for i in range(N)])
    df = pd.read_csv(csv, keep_default_na=False)
    df.iloc[:-1].to_csv(csv, index=False)  # the last request is not in the file at all
    run = load_run(_import(compose_app, csv))
    assert not run.complete and (run.meta["num_failed"], run.meta["missing"]) == (3, 1) and len(run.requests) == N - 4
    assert set(run.requests["request_id"]) == set(range(N - 1)) - {0, 10, 20}


def test_send_times_give_the_arrivals(compose_app, tmp_path: Path) -> None:
    """``start_ms`` on any clock: the earliest send, a failed request's too, is the run's start."""
    real, _ = _setup(tmp_path)
    starts = 5_000 + real.arrival_ns // 1_000_000 + 7 * np.arange(N)  # whole ms, on another clock, a little late
    csv = _csv(tmp_path, real, start_ms=starts, error=["refused"] + [""] * (N - 1))
    run = load_run(_import(compose_app, csv))
    assert run.meta["arrival_source"] == "the tool's send times"
    assert np.array_equal(run.requests["arrival_time_ns"].to_numpy(), (starts[1:] - starts[0]) * 1_000_000)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns=["e2e_ms"]), r"missing column\(s\) \['e2e_ms'\]"),
    (lambda df: df.assign(request_id=df["request_id"] + 1000), "request_id 1000 is not a request of workload 'wl'"),
    (lambda df: df.assign(output_tokens=df["output_tokens"] + 100), r"the output length is \d+, expected 1\.\."),
    (lambda df: df.assign(output_tokens=df["output_tokens"] + 0.5), r"line 2: output_tokens is \d+\.5, not a whole"),
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
    assert "\n" not in str(err.value) and str(csv) in str(err.value)
    assert sorted(p.name for p in (tmp_path / "real_runs").iterdir()) == ["real-tokens"]  # nothing written
