"""A campaign end to end on the CPU with a stand-in engine: the GPU half's calls (budget, packs, resume), collect,
and the published folder reproduced from its archives (tables, figures, summary, MANIFEST.csv).

The stand-in "real" stage serves each workload's requests one at a time (prefill 20 ms, 5 ms a token); the second run
of a workload is 2% slower per token, so the real-vs-real spread of TPOT is known. The bundle is a constant profile
placed at the id the campaign's points look for. Vidur simulates and compare-runs compares for real.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gpu_simulate_test.engine as engine_pkg
from gpu_simulate_test.campaign import (Campaign, _existing_bundle, archived_engine_code, bundle_app, collect,
                                        filed_bundles, publish, read_collected, run_call)
from gpu_simulate_test.config.apps import RealBenchAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.experiment import default_stages
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import PROFILE_META, atomic_dir
from gpu_simulate_test.io.runs import write_run_meta, write_run_tables
from gpu_simulate_test.testing import SyntheticRun, constant_profile
from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.workloads.load import load_workload

MS = 1_000_000
CAMPAIGN = Campaign(
    name="tiny", common=("model=qwen3-tiny", "hardware=cpu", "capacity.num_requests=6", "profile.max_tokens=512",
                         "profile.max_kv_tokens=512", "vidur.random_forrest.num_estimators=[8]", "vidur.k_fold_cv_splits=2"),
    setups={"sarathi": ("backend=native", "backend.max_requests_per_batch=16")},
    workloads={"demo": ("workload=demo", "workload.num_requests=6")},
    fractions=(0.5,), replicates=2, bundle_s=1.0, probe_s=1.0, point_overhead_s=0.0, first_start_s=0.0,
)


class FakeEngine:
    """The real and profile stages of the GPU half, without an engine."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}  # workload id -> runs made of it

    def real(self, app: RealBenchAppConfig) -> Path:
        w = load_workload(Path(app.paths.workloads), app.workload_id)
        slower = 1.02 if self.runs.get(w.workload_id, 0) % 2 else 1.0
        self.runs[w.workload_id] = self.runs.get(w.workload_id, 0) + 1
        arrival = np.array([r.arrival_time_ns for r in w.requests], dtype=np.int64)
        counts = np.array([r.num_decode_tokens for r in w.requests], dtype=np.int64)
        times, steps, free = [], [], 0
        for rid, (a, n, r) in enumerate(zip(arrival, counts, w.requests)):  # one request at a time
            start = max(int(a), free)
            t = start + 20 * MS + np.rint(np.arange(n) * 5 * MS * slower).astype(np.int64)
            times.append(t)
            p = r.num_prefill_tokens
            steps += [(start, int(t[0]), p, 0, f"r{rid}:{p}", str(p))]
            steps += [(int(b), int(e), 0, 1, f"r{rid}:1", str(p + k)) for k, (b, e) in enumerate(zip(t[:-1], t[1:]), 1)]
            free = int(t[-1])
        run = SyntheticRun(arrival, counts, np.concatenate(times), np.array([r.num_prefill_tokens for r in w.requests]), counts)
        requests, tokens = run.frames()
        iterations = pd.DataFrame(steps, columns=["start_time_ns", "end_time_ns", "num_prefill_tokens", "num_decode_tokens",
                                                  "requests", "kv_tokens"]).assign(batch_size=1)
        iterations.insert(0, "iteration_id", np.arange(len(iterations)))
        run_id = f"real-fake-{w.workload_id}-{self.runs[w.workload_id]}"
        with atomic_dir(Path(app.paths.real_runs) / run_id) as tmp:
            write_run_tables(tmp, requests, tokens, iterations)
            write_run_meta(tmp, build_meta(
                kind="real_run", id=run_id, config=asdict(app), inputs={"workload_id": w.workload_id},
                backend={"name": app.backend.name, "num_blocks": 4096, "block_size": app.backend.block_size,
                         "engine_code": engine_pkg.source_fingerprint()},
                gpu="cpu", load_s=1.5, warmup_s=0.1, run_s=free / 1e9, num_requests=len(w.requests),
                engine_stats={"preemptions_during_run": 0, "cuda_graph_captures_during_run": 0},
                host_load={"gpu": None, "busy": False}))
        return Path(app.paths.real_runs) / run_id

    @staticmethod
    def profile(cfg: Any) -> Path:
        """A constant bundle at the id the points look for, with a test check and a verdict record."""
        limits = GridLimits(tokens_per_iteration=512, prefill_chunk=512, batch_size=16, request_tokens=512,
                            block_size=cfg.backend.block_size)
        path = constant_profile(Path(cfg.paths.profiling), bundle_id(cfg), model=cfg.model, hardware=cfg.hardware,
                                backend=cfg.backend, limits=limits, op=0.02, prefill=0.05, decode=0.03)
        meta = json.loads((path / PROFILE_META).read_text())
        meta["config"] = {"model": asdict(cfg.model), "hardware": asdict(cfg.hardware), "backend": asdict(cfg.backend),
                          "profile": asdict(cfg.profile)}
        write_json(path / PROFILE_META, meta)
        return path


def _stages(engine: FakeEngine) -> Any:
    return replace(default_stages(), real=engine.real, profile=engine.profile)


@pytest.mark.slow
def test_calls_collect_and_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    folder, carry = tmp_path / "results", tmp_path / "carry"
    # Call 1 on a "fresh machine": the bundle (estimated 1 s) and the probe (1 s) fit its 60 s, a point (1,000 s) not.
    out1 = tmp_path / "out1"
    slow = replace(CAMPAIGN, point_overhead_s=1000.0)
    report = run_call(slow, tmp_path / "gpu1", out1, budget_s=60.0, carry=carry, stages=_stages(engine))
    assert [line.split("s ", 1)[1].split(":")[0] for line in report.lines][:2] == ["bundle sarathi", "capacity sarathi demo"]
    assert report.pending == 2 and sorted(p.name for p in out1.iterdir()) == ["pack-0.tar", "summary.txt"]
    assert (out1 / "summary.txt").read_text().endswith("2 task(s) left for later calls\n")
    collect(out1, folder, carry)
    bid = bundle_id(bundle_app(CAMPAIGN, tmp_path / "ids", "sarathi", _stages(engine)))
    assert [p.name for p in (folder / "bundles").iterdir()] == [f"{bid}.tar.xz"]
    capacity = list((carry / "capacity").glob("*.json"))
    assert len(capacity) == 1
    # Call 2 on another fresh machine, for the second replicate only: the carried capacity is reused (same offered
    # rates), the bundle is not rebuilt.
    out2 = tmp_path / "out2"
    report = run_call(CAMPAIGN, tmp_path / "gpu2", out2, budget_s=1e9, carry=carry, stages=_stages(engine),
                      only="r1$")
    assert report.pending == 1 and [" r1 " in x for x in report.lines] == [True]
    collect(out2, folder, carry)
    # Call 3: the first replicate.
    out3 = tmp_path / "out3"
    report = run_call(CAMPAIGN, tmp_path / "gpu3", out3, budget_s=1e9, carry=carry, stages=_stages(engine))
    assert report.pending == 0 and [" r0 " in x for x in report.lines] == [True]
    assert not any("bundle" in x or "capacity" in x for x in report.lines)
    collect(out3, folder, carry)
    assert len(list((folder / "points").glob("*.tar.xz"))) == 2 and len(read_collected(carry)) == 3
    # A new checkout (no tmp/): the carry rebuilt from the committed folder alone is the same
    fresh = tmp_path / "carry-of-a-new-checkout"
    assert collect(None, folder, fresh) == []
    assert read_collected(fresh) == read_collected(carry)
    assert sorted(p.name for p in (fresh / "capacity").iterdir()) == sorted(p.name for p in (carry / "capacity").iterdir())
    # Call 4: nothing left.
    report = run_call(CAMPAIGN, tmp_path / "gpu4", tmp_path / "out4", budget_s=1e9, carry=carry, stages=_stages(engine))
    assert report.lines == [] and report.pending == 0

    # The local half, from the folder's archives alone (and the findings written by hand, which it lists only).
    (folder / "README.md").write_text("# findings\n")
    written = publish(CAMPAIGN, folder, tmp_path / "local", title="tiny", reproduce="publish")
    assert "README.md" not in written and (folder / "README.md").read_text() == "# findings\n"
    assert {"summary.md", "MANIFEST.csv", "tables/sweep.csv", "tables/iterations.csv", "tables/runs.csv",
            "tables/bundle_test.csv"} <= set(written)
    sweep = pd.read_csv(folder / "tables" / "sweep.csv")
    assert sorted(set(sweep["load_fraction"])) == [0.5]
    tpot = sweep[(sweep["metric"] == "tpot") & (sweep["statistic"] == "p50")]
    # the fake engine's second run of a workload is 2% slower per token: r0, run after r1, so r1 is 1/1.02 of r0
    assert tpot["spread_pct"].to_numpy() == pytest.approx([100 * (1 / 1.02 - 1)], abs=0.05)
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    assert len(runs) == 2 and (runs["load_s"] == 1.5).all()
    summary = (folder / "summary.md").read_text()
    assert "## Acceptance" in summary and "publish" in summary
    # every step of the first real run, predicted from its own batch with the point's bundle (vidur_ext/replay.py)
    replay = pd.read_csv(folder / "tables" / "replay.csv")
    first_run = tmp_path / "local" / "real_runs" / runs.loc[runs["replicate"] == 0, "real_run"].iloc[0]
    steps = pd.read_csv(first_run / "iteration_metrics.csv")
    assert len(replay) == 1 and int(replay["real_steps"].iloc[0]) == len(steps)
    assert replay["abs_err_p50_pct"].iloc[0] >= 0 and "Every real step predicted from its own batch" in summary
    # the run's steps summed, predicted over measured: the same predictor's steps, recomputed here
    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
    from gpu_simulate_test.vidur_ext.replay import replay_steps

    app = compose_app("experiment", [*CAMPAIGN.overrides("sarathi", "demo", 0.5, 0), f"paths.root={tmp_path / 'local'}"])
    reqs = pd.read_csv(first_run / "request_metrics.csv")
    steps_pred = replay_steps(load_profiling_root(tmp_path / "local" / "profiling" / bid, check_tables=False), steps,
                              dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])), model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                              cache_root=Path(app.paths.cache))
    expect = 100 * (steps_pred["predicted_ns"].sum() / steps["end_time_ns"].sub(steps["start_time_ns"]).sum() - 1)
    assert replay["time_weighted_error_pct"].iloc[0] == pytest.approx(expect, abs=1e-6)
    assert "summed over the run" in summary
    with open(folder / "MANIFEST.csv", newline="") as fh:
        listed = sorted(r["file"] for r in csv.DictReader(fh))
    assert listed == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.csv")
    assert "README.md" in listed
    # Reproducible: the command again rewrites the same tables (the simulations are seeded: test_vidur_sim_run.py).
    before = {f: (folder / f).read_bytes() for f in ("tables/sweep.csv", "tables/iterations.csv", "tables/runs.csv",
                                                     "summary.md", "MANIFEST.csv")}
    publish(CAMPAIGN, folder, tmp_path / "local", title="tiny", reproduce="publish")
    assert {f: (folder / f).read_bytes() for f in before} == before
    # The engine changes after the campaign: its points and bundle are found by the keys of the engine they ran on
    # (each real run's backend.engine_code), and the command, on a root of its own, still rewrites the same tables.
    measured = engine_pkg.source_fingerprint()
    monkeypatch.setattr(engine_pkg, "source_fingerprint", lambda: "0" * 12)
    assert archived_engine_code(folder) == measured
    assert bundle_id(bundle_app(CAMPAIGN, tmp_path / "ids", "sarathi", _stages(engine))) != bid
    publish(CAMPAIGN, folder, tmp_path / "local-after", title="tiny", reproduce="publish")
    assert {f: (folder / f).read_bytes() for f in before} == before
    # The profiler changes too (how a bundle is timed is in every id): the bundle the folder's last publish recorded
    # for the setup (tables/bundle_test.csv) is used, being of the same request, and the tables come out the same.
    from gpu_simulate_test.vidur_ext.profiler import bundle as bundle_mod

    monkeypatch.setattr(bundle_mod, "HEAD_TERM", bundle_mod.HEAD_TERM + " (timed another way)")
    assert bundle_id(bundle_app(CAMPAIGN, tmp_path / "ids", "sarathi", _stages(engine))) != bid
    assert filed_bundles(folder) == {"sarathi": bid}
    publish(CAMPAIGN, folder, tmp_path / "local-profiler", title="tiny", reproduce="publish")
    assert {f: (folder / f).read_bytes() for f in before} == before


def _stats_dir(root: Path, name: str, cells: dict[tuple[str, str], tuple[float, float]]) -> Path:
    """A comparison directory holding only tables/stats.csv: (metric, statistic) -> (real, sim)."""
    from gpu_simulate_test.io.schemas import COMPARISON_STATS
    from gpu_simulate_test.io.tables import write_table

    rows = [{"metric": m, "unit": "ns", "statistic": st, "real": r, "sim": s, "diff": s - r, "error_pct": 100 * (s - r) / r}
            for (m, st), (r, s) in cells.items()]
    (root / name / "tables").mkdir(parents=True)
    write_table(pd.DataFrame(rows), root / name / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS)
    return root / name


def test_cells_are_judged_against_5_percent_or_the_spread_up_to_70_percent_load(tmp_path: Path) -> None:
    from gpu_simulate_test.analysis.publish import ComparedPoint, sweep_table

    sim = {("ttft", "p50"): (100.0, 104.0), ("tpot", "p50"): (10.0, 10.8), ("e2e", "p99"): (1000.0, 1200.0)}
    real_b = {("ttft", "p50"): (100.0, 101.0), ("tpot", "p50"): (10.0, 9.0), ("e2e", "p99"): (1000.0, 1100.0)}
    rows = []
    for fraction in (0.7, 0.9):
        tag = f"{fraction:g}"
        rows.append(ComparedPoint("s", "w", fraction, 1.0, 2.0, ("a", "b"), ("ra", "rb"), "bundle",
                                  _stats_dir(tmp_path, f"sim{tag}", sim), _stats_dir(tmp_path, f"spread{tag}", real_b)))
    t = sweep_table(rows).set_index(["load_fraction", "metric", "statistic"]).sort_index()
    assert t.loc[(0.7, "ttft", "p50"), "cell"] == "within 5%"  # +4%
    assert t.loc[(0.7, "tpot", "p50"), "cell"] == "within spread"  # +8%, the second real run -10%
    assert t.loc[(0.7, "e2e", "p99"), "cell"] == "outside"  # +20%, the second real run +10%
    assert t.loc[(0.7, "tpot", "p50"), "spread_pct"] == pytest.approx(-10.0) and t.loc[(0.7, "tpot", "p50"), "real_b"] == 9.0
    assert set(t.loc[0.9, "cell"]) == {"measured"}  # near capacity: measured and explained, not judged


def _matched_point(root: Path, rows: list[dict], pairs: list[dict], fraction: float) -> Any:
    """A compared point whose real run ``r`` holds ``rows`` (iteration_metrics) and comparison ``cmp`` ``pairs``."""
    from gpu_simulate_test.analysis.publish import ComparedPoint
    from gpu_simulate_test.io.schemas import COMPARISON_ITERATION_PAIRS, ITERATION_METRICS
    from gpu_simulate_test.io.tables import write_table

    (root / "real_runs" / "r").mkdir(parents=True)
    write_table(pd.DataFrame(rows), root / "real_runs" / "r" / ITERATION_METRICS.filename, ITERATION_METRICS)
    (root / "cmp" / "tables").mkdir(parents=True)
    write_table(pd.DataFrame(pairs), root / "cmp" / "tables" / COMPARISON_ITERATION_PAIRS.filename,
                COMPARISON_ITERATION_PAIRS)
    return ComparedPoint("s", "w", fraction, 1.0, 3.0, ("k",), ("r",), "bundle", root / "cmp", None)


def test_matched_decodes_by_batch_size_and_kv_unevenness(tmp_path: Path) -> None:
    """decode_kv.csv and its summary table, on five matched decodes (and one mixed step, left out) whose KV spreads
    and medians are worked out by hand."""
    from gpu_simulate_test.analysis.publish import _kv_lines, decode_kv_table

    ms = 1_000_000
    steps = [  # (KV of each request after the step, prefill tokens, real ms, sim ms)
        ([100, 100], 0, 1.0, 1.0),  # longest / mean 1.0: [1, 1.5), 0%
        ([100, 300], 0, 1.0, 0.9),  # 300 / 200 = 1.5: [1.5, 3), -10%
        ([50, 250], 0, 1.0, 0.8),  # 250 / 150 = 1.67: [1.5, 3), -20%  -> median -15%, mean KV 175, longest 275
        ([100, 100, 100, 700], 0, 2.0, 1.6),  # 700 / 250 = 2.8: [1.5, 3), -20%
        ([100, 100, 100, 1300], 0, 2.0, 1.2),  # 1300 / 400 = 3.25: [3, inf), -40%
        ([100, 10], 10, 3.0, 3.0),  # mixed: not a decode
    ]
    rows, pairs = [], []
    for i, (kv, prefill, real, sim) in enumerate(steps):
        tokens = [1] * (len(kv) - 1) + [prefill or 1]
        rows.append({"iteration_id": i, "start_time_ns": 10 * i, "end_time_ns": 10 * i + 5, "batch_size": len(kv),
                     "num_prefill_tokens": prefill, "num_decode_tokens": len(kv) - (1 if prefill else 0),
                     "requests": ";".join(f"r{j}:{n}" for j, n in enumerate(tokens)),
                     "kv_tokens": ";".join(map(str, kv))})
        pairs.append({"real_iteration_id": i, "sim_iteration_id": i, "batch_size": len(kv),
                      "num_prefill_tokens": prefill, "num_decode_tokens": len(kv) - (1 if prefill else 0),
                      "real_step_ns": int(real * ms), "sim_step_ns": int(sim * ms)})
    point = _matched_point(tmp_path, rows, pairs, 0.3)
    t = decode_kv_table([point], tmp_path).set_index(["batch_size_min", "uneven_min"])
    assert list(t.index) == [(2, 1.0), (2, 1.5), (3, 1.5), (3, 3.0)]
    assert t["steps"].tolist() == [1, 2, 1, 1]
    assert t["share_of_matched_decodes"].tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2])
    assert t["error_pct_p50"].tolist() == pytest.approx([0.0, -15.0, -20.0, -40.0])
    assert t.loc[(2, 1.5), "kv_mean_p50"] == pytest.approx(175) and t.loc[(2, 1.5), "kv_longest_p50"] == 275
    assert t.loc[(3, 3.0), "batch_size_max"] == 4 and t.loc[(3, 3.0), "uneven_max"] == float("inf")
    lines = _kv_lines(decode_kv_table([point], tmp_path), "s", "w")
    assert "| 2 | 1.5-3 | -15.0% (40%) |" in lines and "| 3-4 | >= 3 | -40.0% (20%) |" in lines


def test_matched_chunk_steps_by_prefix(tmp_path: Path) -> None:
    """prefill_chunks.csv and its summary table, on five matched steps with a chunk (and one decode, left out) whose
    prefixes (KV after the step less the chunk) and medians are worked out by hand."""
    from gpu_simulate_test.analysis.publish import _chunk_lines, prefill_chunks_table

    ms = 1_000_000
    steps = [  # (tokens of each request in the step, its KV after the step, real ms, sim ms)
        ([512], [512], 2.0, 1.9),  # a first chunk: prefix 0, -5%
        ([1, 500], [700, 500], 3.0, 2.7),  # a first chunk beside a decode: prefix 0, -10%  -> median -7.5%
        ([1, 490], [701, 990], 3.0, 3.3),  # prefix 500: (0, 512], +10%
        ([300], [812], 2.0, 2.4),  # prefix 512: (0, 512], +20%  -> median +15%, chunk 395, decodes 0.5
        ([1, 1, 400], [702, 50, 3400], 4.0, 4.4),  # prefix 3,000: over 2,048, +10%
        ([1, 1], [703, 51], 1.0, 1.0),  # decodes only: left out
    ]
    rows, pairs = [], []
    for i, (tokens, kv, real, sim) in enumerate(steps):
        prefill = sum(n for n in tokens if n > 1)
        rows.append({"iteration_id": i, "start_time_ns": 10 * i, "end_time_ns": 10 * i + 5, "batch_size": len(kv),
                     "num_prefill_tokens": prefill, "num_decode_tokens": sum(1 for n in tokens if n == 1),
                     "requests": ";".join(f"r{j}:{n}" for j, n in enumerate(tokens)),
                     "kv_tokens": ";".join(map(str, kv))})
        pairs.append({"real_iteration_id": i, "sim_iteration_id": i, "batch_size": len(kv),
                      "num_prefill_tokens": prefill, "num_decode_tokens": sum(1 for n in tokens if n == 1),
                      "real_step_ns": int(real * ms), "sim_step_ns": int(sim * ms)})
    point = _matched_point(tmp_path, rows, pairs, 0.7)
    t = prefill_chunks_table([point], tmp_path).set_index("prefix_min")
    assert list(t.index) == [0, 1, 2049] and t["steps"].tolist() == [2, 2, 1]
    assert t["prefix_max"].tolist() == [0, 512, 10**9]
    assert t["share_of_matched_chunk_steps"].tolist() == pytest.approx([0.4, 0.4, 0.2])
    assert t["error_pct_p50"].tolist() == pytest.approx([-7.5, 15.0, 10.0])
    assert t.loc[1, "chunk_tokens_p50"] == 395 and t.loc[1, "decodes_p50"] == 0.5
    assert t.loc[1, "real_step_ns_p50"] == 2.5 * ms and t.loc[1, "sim_step_ns_p50"] == pytest.approx(2.85 * ms)
    lines = _chunk_lines(t.reset_index(), "s", "w")
    assert "| 0 (a first chunk) | -7.5% (40%) |" in lines and "| 1-512 | +15.0% (40%) |" in lines
    assert "| > 2048 | +10.0% (20%) |" in lines


def test_matched_steps_by_kind_and_batch_size(tmp_path: Path) -> None:
    """iteration_kinds.csv and its summary table, on five matched steps whose medians are worked out by hand."""
    from gpu_simulate_test.analysis.publish import ComparedPoint, _kinds_lines, iteration_kinds_table
    from gpu_simulate_test.io.schemas import COMPARISON_ITERATION_PAIRS
    from gpu_simulate_test.io.tables import write_table

    ms = 1_000_000
    steps = [  # (batch, prefill tokens, decode tokens, real ms, sim ms)
        (1, 0, 1, 1.0, 1.1),  # decode, 1 request: +10%
        (2, 0, 2, 2.0, 1.5),  # decode, 2: -25%
        (2, 0, 2, 2.0, 1.6),  # decode, 2: -20%  -> median -22.5%, sim median 1.55 ms
        (3, 10, 2, 3.0, 3.3),  # mixed, 3: +10%
        (1, 32, 0, 4.0, 3.0),  # prefill, 1: -25%
    ]
    pairs = pd.DataFrame([{"real_iteration_id": i, "sim_iteration_id": i, "batch_size": b, "num_prefill_tokens": p,
                           "num_decode_tokens": d, "real_step_ns": int(r * ms), "sim_step_ns": int(s * ms)}
                          for i, (b, p, d, r, s) in enumerate(steps)])
    (tmp_path / "cmp" / "tables").mkdir(parents=True)
    write_table(pairs, tmp_path / "cmp" / "tables" / COMPARISON_ITERATION_PAIRS.filename, COMPARISON_ITERATION_PAIRS)
    point = ComparedPoint("s", "w", 0.3, 1.0, 3.0, ("k",), ("r",), "bundle", tmp_path / "cmp", None)
    t = iteration_kinds_table([point]).set_index(["kind", "batch_size_min"])
    assert list(t.index) == [("decode", 1), ("decode", 2), ("mixed", 3), ("prefill", 1)]
    assert t["steps"].tolist() == [1, 2, 1, 1] and t["share_of_matched"].tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2])
    assert t["error_pct_p50"].tolist() == pytest.approx([10.0, -22.5, 10.0, -25.0])
    assert t.loc[("decode", 2), "sim_step_ns_p50"] == pytest.approx(1.55 * ms)
    assert t.loc[("mixed", 3), "batch_size_max"] == 3  # bin (2, 4], whose largest batch here is 3
    lines = _kinds_lines(iteration_kinds_table([point]), "s", "w")
    assert "| decode | 2 | -22.5% (40%) |" in lines and "| mixed | 3 | +10.0% (20%) |" in lines


def test_collect_keeps_every_calls_files_within_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls collected in the same second (their files stamped alike) keep both summaries, and a packed archive
    of an earlier call's name but other bytes keeps both too; collecting a call twice files nothing new."""
    import gpu_simulate_test.campaign as campaign

    monkeypatch.setattr(campaign.time, "strftime", lambda fmt: "20261202T114609")
    folder, carry = tmp_path / "results", tmp_path / "carry"
    for call in ("a", "b"):
        (tmp_path / call).mkdir()
        (tmp_path / call / "summary.txt").write_text(f"call {call}\n")
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w:gz") as archive:  # the probe's archive, one file in it
            _add(archive, "probe.txt", f"probe of call {call}".encode())
        with tarfile.open(tmp_path / call / "pack-0.tar", "w") as tar:
            _add(tar, "diagnostics/capacity-sarathi-demo.tar.gz", inner.getvalue())
        collect(tmp_path / call, folder, carry)
    collect(tmp_path / "b", folder, carry)
    kept = sorted(p.name for p in (folder / "diagnostics").iterdir())
    assert kept == ["20261202T114609-summary-2.txt", "20261202T114609-summary.txt", "capacity-sarathi-demo-2.tar.gz",
                    "capacity-sarathi-demo.tar.gz"]
    probes = []
    for name in kept[2:]:
        with tarfile.open(folder / "diagnostics" / name) as archive:
            probes.append(archive.extractfile("probe.txt").read())  # type: ignore[union-attr]
    assert sorted(probes) == [b"probe of call a", b"probe of call b"]
    assert sorted((folder / "diagnostics" / n).read_text() for n in kept[:2]) == ["call a\n", "call b\n"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_a_capacity_archived_under_a_former_key_is_filed_under_todays(tmp_path: Path) -> None:
    """A capacity the archives hold under a key today's code no longer computes (a trace's path was in it) is copied
    to today's key, found by the probe archive of its setup and workload; with none, or two such archives, nothing is
    guessed."""
    from gpu_simulate_test.campaign import experiment_app, rehome_capacities
    from gpu_simulate_test.experiment import capacity_path

    folder, capacity = tmp_path / "results", tmp_path / "capacity"
    (folder / "diagnostics").mkdir(parents=True)
    capacity.mkdir()
    today = capacity_path(experiment_app(tmp_path, CAMPAIGN.overrides("sarathi", "demo", 0.5, 0))).name
    (capacity / "0123456789ab.json").write_text('{"capacity_rps": 7.5}')
    assert rehome_capacities(CAMPAIGN, folder, capacity) == [] and not (capacity / today).exists()  # no probe archive
    (folder / "diagnostics" / "capacity-sarathi-demo-0123456789ab.tar.xz").write_bytes(b"")
    (folder / "diagnostics" / "capacity-sarathi-demo-ffffffffffff.tar.xz").write_bytes(b"")  # its file not archived
    assert rehome_capacities(CAMPAIGN, folder, capacity) == [today.removesuffix(".json")]
    assert (capacity / today).read_text() == '{"capacity_rps": 7.5}'
    assert rehome_capacities(CAMPAIGN, folder, capacity) == []  # filed already
    (capacity / today).unlink()
    (capacity / "ffffffffffff.json").write_text('{"capacity_rps": 9.0}')  # two candidates: which is it?
    assert rehome_capacities(CAMPAIGN, folder, capacity) == [] and not (capacity / today).exists()


def test_a_folder_holds_the_points_of_one_engine(tmp_path: Path) -> None:
    """``archived_engine_code``: the engine named by every point's real run, none where no run names one, and an
    error naming both where two engines' points were collected into one folder."""
    def point(name: str, code: Any) -> None:
        meta = json.dumps({"backend": {"name": "native", **({"engine_code": code} if code else {})}}).encode()
        (tmp_path / "points").mkdir(exist_ok=True)
        with tarfile.open(tmp_path / "points" / f"{name}.tar.xz", "w:xz") as tar:
            _add(tar, f"real_runs/real-{name}/run_meta.json", meta)

    point("a", None)
    assert archived_engine_code(tmp_path) is None
    point("b", "c1c1a4eaacd2")
    point("c", "c1c1a4eaacd2")
    assert archived_engine_code(tmp_path) == "c1c1a4eaacd2"
    point("d", "0123456789ab")
    with pytest.raises(InputError, match=r"real runs of 2 engines \(0123456789ab: 1 archives, e.g. d.tar.xz; "
                                         r"c1c1a4eaacd2: 2 archives"):
        archived_engine_code(tmp_path)


def test_a_bundle_filed_by_a_former_publish_serves_only_its_own_request(tmp_path: Path) -> None:
    """Where today's profiler names a bundle not among the archives, the one the folder's tables name is used if it
    was built for the same request (model, hardware, backend, profile), and refused, naming what differs, if not."""
    engine = FakeEngine()
    cfg = bundle_app(CAMPAIGN, tmp_path, "sarathi", _stages(engine))
    built = engine.profile(cfg)
    filed = built.with_name("qwen3-tiny-cpu-native-000000000000")
    built.rename(filed)
    with pytest.raises(InputError, match="not among the archives"):
        _existing_bundle(cfg)
    assert _existing_bundle(cfg, filed=filed.name) == filed
    meta = json.loads((filed / PROFILE_META).read_text())
    write_json(filed / PROFILE_META, {**meta, "engine_code": engine_pkg.source_fingerprint()})
    assert _existing_bundle(cfg, filed=filed.name) == filed  # built on the engine the ids name
    write_json(filed / PROFILE_META, {**meta, "engine_code": "0" * 12})
    with pytest.raises(InputError, match="built on another engine"):
        _existing_bundle(cfg, filed=filed.name)
    write_json(filed / PROFILE_META, meta)
    other = replace(cfg, profile=replace(cfg.profile, iteration_samples=cfg.profile.iteration_samples + 1))
    with pytest.raises(InputError, match=r"another request \(profile differ\)"):
        _existing_bundle(other, filed=filed.name)
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"setup": ["sarathi", "sarathi", "vllm"], "bundle_id": ["a", "b", "c"]}).to_csv(
        tmp_path / "tables" / "bundle_test.csv", index=False)
    with pytest.raises(InputError, match="sarathi name more than one bundle"):
        filed_bundles(tmp_path)
    assert filed_bundles(tmp_path / "nowhere") == {}
    pd.DataFrame({"shape": ["decode:1x64"]}).to_csv(tmp_path / "tables" / "bundle_test.csv", index=False)
    with pytest.raises(InputError, match="no setup and bundle_id columns"):
        filed_bundles(tmp_path)


def test_a_points_replicates_run_minutes_apart_not_back_to_back() -> None:
    """Per setup and workload the GPU half measures the first replicate of every fraction before any second one, so
    that a point's two runs see the host at different moments (its drift over minutes shows in the spread)."""
    campaign = replace(CAMPAIGN, fractions=(0.1, 0.5, 0.9), workloads={"demo": ("workload=demo",), "b": ("workload=demo",)})
    points = [(t.workload, t.fraction, t.replicate) for t in campaign.tasks() if t.kind == "point"]
    assert points == [(w, f, r) for w in ("demo", "b") for r in (0, 1) for f in (0.1, 0.5, 0.9)]
    kinds = [t.kind for t in campaign.tasks()]
    assert kinds[:3] == ["bundle", "capacity", "capacity"] and set(kinds[3:]) == {"point"}
