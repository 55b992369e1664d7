"""compare-runs on synthetic run pairs of known distortion: every table must recover the distortion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.schemas import TABLES, markdown_table
from gpu_simulate_test.io.runs import run_content
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.testing import SyntheticRun, constant_profile, sequential_run, write_run
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits

REPO = Path(__file__).resolve().parents[2]
N = 40


def _base(seed: int = 0, lengths: np.ndarray | None = None) -> SyntheticRun:
    counts = np.random.default_rng(seed).integers(2, 25, N) if lengths is None else lengths
    return sequential_run(N, counts, seed=seed)


def _compare(compose_app: Callable[..., Any], tmp_path: Path, real: SyntheticRun, sim: SyntheticRun,
             *extra: str, sim_workload: str = "wl", real_status: str = "complete") -> Path:
    write_run(tmp_path / "real_runs", "real-1", "real_run", "wl", real, status=real_status)
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", sim_workload, sim)
    return compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1", *extra]))


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {s.name: read_table(out / "tables" / s.filename, s) for s in TABLES.values()
            if s.spec_file == "comparison.md" and (out / "tables" / s.filename).exists()}


def test_scaled_sim_recovers_ten_percent_everywhere(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    real = _base()
    out = _compare(compose_app, tmp_path, real, real.scaled(1.1))
    t = _tables(out)
    st = t["comparison_stats"]
    # Each sim value is 1.1 x real up to integer-ns rounding (ITL/TPOT: a difference of two rounded times).
    assert (np.abs(st["sim"] - 1.1 * st["real"]) <= 1.0).all()
    assert (np.abs(st["error_pct"] - 10.0) <= 100.0 / st["real"]).all()
    d = t["comparison_distribution"].set_index("metric")
    req = t["comparison_requests"]
    for m in ("ttft", "e2e"):
        assert np.abs(req[f"{m}_sim_ns"] - 1.1 * req[f"{m}_real_ns"]).max() <= 0.5
        assert abs(d.loc[m, "wasserstein"] - 0.1 * req[f"{m}_real_ns"].mean()) <= 1.0
    assert np.allclose(d[["paired_abs_err_p50_pct", "paired_abs_err_p90_pct"]], 10.0, atol=1e-3)
    it = t["comparison_iteration_error"]
    assert (np.abs(it["sim_step_mean_ns"] - 1.1 * it["real_step_mean_ns"]) <= 1.0).all()
    meta = read_meta(out / "comparison_meta.json", "comparison")
    assert meta["iterations"]["matched_fraction_of_real"] == 1.0
    assert meta["inputs"] == {"real_run": "real-1", "sim_run": "sim-1", "workload_id": "wl",
                              "real_content": run_content(tmp_path / "real_runs" / "real-1"),
                              "sim_content": run_content(tmp_path / "vidur_runs" / "sim-1")}
    assert sorted(p.name for p in (out / "figs").iterdir()) == ["cdf.png", "scatter.png", "step_time.png", "timeline.png"]
    summary = (out / "summary.md").read_text()
    assert "model: qwen3-tiny; hardware: cpu; backend: hf-generate" in summary
    assert "Simulated with bundle (not recorded): verdict unknown" in summary
    assert "| TTFT | P50 |" in headline_text(out) and "+10.0%" in headline_text(out)


def test_summary_quotes_the_bundle_verdict_next_to_the_headline(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    cfg = compose_app("vidur_sim", ["workload_id=wl", "profiling_root=b"])
    limits = GridLimits(tokens_per_iteration=64, prefill_chunk=64, batch_size=1, request_tokens=512, block_size=256)
    constant_profile(Path(cfg.paths.profiling), "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                     limits=limits, op=0.1, prefill=1.0, decode=0.5, held_out_error_pct=62.0)
    real = _base()
    write_run(tmp_path / "real_runs", "real-1", "real_run", "wl", real)
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", "wl", real, bundle_id="b")
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1"]))
    summary = (out / "summary.md").read_text()
    headline = summary.index("## Headline")
    line = summary[headline:].splitlines()[2]
    assert line.startswith("Simulated with bundle `b`: verdict **fail**: held-out median |error| 62.0% > tolerance 10%")
    assert "Held-out errors: decode:1x16 +62.0%" in line
    meta = read_meta(out / "comparison_meta.json", "comparison")
    assert meta["bundle"]["id"] == "b" and meta["bundle"]["verdict"] == "fail"
    assert "busy host" not in summary  # the real run recorded no host load


def test_summary_warns_of_a_real_run_measured_on_a_busy_host(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    real = _base()
    write_run(tmp_path / "real_runs", "real-1", "real_run", "wl", real)
    meta_path = tmp_path / "real_runs" / "real-1" / "run_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["host_load"] = {"busy": True, "reasons": ["other processes used 1.40 CPU cores on average (more than 0.5)"]}
    meta_path.write_text(json.dumps(meta))
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", "wl", real)
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1"]))
    assert ("- warning: the real run was measured on a busy host (other processes used 1.40 CPU cores on average (more "
            "than 0.5)): its latencies may hold another tenant's load") in (out / "summary.md").read_text()


def test_constant_ttft_shift_gives_wasserstein_equal_to_shift(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    shift = 3_000_000
    real = _base(seed=1)
    out = _compare(compose_app, tmp_path, real, real.shifted(shift))
    t = _tables(out)
    st = t["comparison_stats"].set_index("metric")
    d = t["comparison_distribution"].set_index("metric")
    for m in ("ttft", "e2e"):
        assert np.allclose(st.loc[m, "diff"], shift, rtol=0, atol=1e-6)
        assert d.loc[m, "wasserstein"] == pytest.approx(shift, abs=1e-6)
    for m in ("tpot", "itl"):
        assert np.allclose(st.loc[m, "diff"], 0.0, atol=1e-6) and np.allclose(st.loc[m, "error_pct"], 0.0, atol=1e-9)
        assert d.loc[m, "ks_statistic"] == 0 and d.loc[m, "wasserstein"] == 0


def test_identical_runs_give_zero_errors(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    real = _base(seed=2)
    t = _tables(_compare(compose_app, tmp_path, real, real))
    st, d = t["comparison_stats"], t["comparison_distribution"]
    assert (st["diff"] == 0).all() and (st["error_pct"] == 0).all()
    cols = ["ks_statistic", "wasserstein", "paired_abs_err_p50_pct", "paired_abs_err_p90_pct"]
    assert (d[cols] == 0).all().all()
    assert (t["comparison_iteration_error"]["error_pct"] == 0).all()


def test_early_stop_truncates_sim_series(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    base = _base(seed=3)
    keep = base.counts.copy()
    keep[::3] = np.maximum(keep[::3] // 2, 1)  # every third request stopped early in the real run
    real = base.truncated(keep)
    out = _compare(compose_app, tmp_path, real, base.scaled(1.1))
    t = _tables(out)
    req = t["comparison_requests"]
    assert (req["tokens_compared"] == keep).all() and (req["sim_tokens"] == base.counts).all()
    st = t["comparison_stats"]
    assert (np.abs(st["sim"] - 1.1 * st["real"]) <= 1.0).all()
    meta = read_meta(out / "comparison_meta.json")
    assert meta["counts"]["truncated_sim"] == int((keep < base.counts).sum()) > 0
    assert meta["iterations"]["matched"] == meta["iterations"]["real_iterations"]
    assert f"{meta['counts']['truncated_sim']} simulated token series truncated" in (out / "summary.md").read_text()


def test_one_token_outputs_are_counted_not_averaged(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    lengths = np.random.default_rng(4).integers(2, 10, N)
    lengths[:7] = 1
    real = _base(seed=4, lengths=lengths)
    t = _tables(_compare(compose_app, tmp_path, real, real.scaled(1.1)))
    d = t["comparison_distribution"].set_index("metric")
    assert d.loc["tpot", "n_excluded"] == 7 and d.loc["tpot", "n_pairs"] == N - 7
    req = t["comparison_requests"]
    assert req["tpot_real_ns"].isna().sum() == 7
    mean = t["comparison_stats"].set_index(["metric", "statistic"]).loc[("tpot", "mean"), "real"]
    assert mean == pytest.approx(req["tpot_real_ns"].dropna().mean())


def test_mismatched_workloads_error_names_both_runs(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    real = _base(seed=5)
    with pytest.raises(InputError, match=r"'real-1'.*'wl'.*'sim-1'.*'other-wl'"):
        _compare(compose_app, tmp_path, real, real, sim_workload="other-wl")
    assert not (tmp_path / "comparisons").exists() or not any((tmp_path / "comparisons").iterdir())


def test_incomplete_run_needs_allow_incomplete(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    base = _base(seed=6)
    real = SyntheticRun(base.arrival_ns[:30], base.counts[:30], base.times_ns[: base.offsets[30]],
                        base.num_prefill[:30], base.num_decode[:30])
    with pytest.raises(InputError, match="allow_incomplete=true"):
        _compare(compose_app, tmp_path, real, base, real_status="incomplete")
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1", "allow_incomplete=true"]))
    meta = read_meta(out / "comparison_meta.json")
    assert meta["counts"]["requests_compared"] == 30 and meta["counts"]["left_out_sim"] == N - 30
    assert "10 only in the simulated run" in (out / "summary.md").read_text()


def _times_in_seconds(path: Path) -> None:
    df = pd.read_csv(path)
    df["token_time_ns"] = df["token_time_ns"] / 1e9
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "token_metrics.csv").unlink(), "token_metrics.csv: missing"),
        (lambda d: (d / "request_metrics.csv").write_text(
            (d / "request_metrics.csv").read_text().replace("ttft_ns", "ttft_ms", 1)), "missing column(s) ['ttft_ns']"),
        (lambda d: _times_in_seconds(d / "token_metrics.csv"), "column 'token_time_ns' is not an integer"),
    ],
)
def test_broken_run_files_error_cleanly(compose_app: Callable[..., Any], tmp_path: Path,
                                        damage: Callable[[Path], None], fragment: str) -> None:
    real = _base(seed=7)
    write_run(tmp_path / "real_runs", "real-1", "real_run", "wl", real)
    write_run(tmp_path / "vidur_runs", "sim-1", "vidur_run", "wl", real)
    damage(tmp_path / "vidur_runs" / "sim-1")
    with pytest.raises(ArtifactError) as err:
        compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1"]))
    assert fragment in str(err.value) and "sim-1" in str(err.value)
    assert not (tmp_path / "comparisons").exists()


def test_unknown_run_id_lists_what_exists(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    write_run(tmp_path / "real_runs", "real-1", "real_run", "wl", _base(seed=8))
    with pytest.raises(InputError, match="real-1"):
        compare_runs(compose_app("compare_runs", ["real_run=real-9", "sim_run=sim-1"]))


def test_spec_documents_every_comparison_table() -> None:
    spec = (REPO / "specs" / "comparison.md").read_text()
    for schema in TABLES.values():
        if schema.spec_file == "comparison.md":
            assert markdown_table(schema) in spec, schema.name
