"""The demo's pipeline end to end on a smaller workload: every stage, every backend the demo runs, then reuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.experiment import run_experiment
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.runs import load_run

# A CPU bundle built on a shared test host may well be "busy" or "fail": accepted, as make demo accepts its own.
SMALL = ["workload=demo", "workload.num_requests=6", "workload.lengths.prefill.max=64", "workload.lengths.decode.max=12",
         "accept_bundle=true"]
CAP = {"native": ["backend.max_requests_per_batch=6"]}  # the workload's size (the demo's rule, cli/demo.py)


@pytest.mark.parametrize("backend", ["hf-generate", "hf-continuous", "native"])
def test_demo_pipeline_small(backend: str, compose_app: Callable[..., Any]) -> None:
    cfg = compose_app("experiment", [f"backend={backend}", *CAP.get(backend, []), *SMALL])
    rec = run_experiment(cfg)
    paths = cfg.paths
    real = load_run(Path(paths.real_runs) / rec.real_run, "real_run")
    sim = load_run(Path(paths.vidur_runs) / rec.sim_run, "vidur_run")
    assert real.workload_id == sim.workload_id == rec.workload_id
    assert len(real.requests) == len(sim.requests) == 6
    assert (real.requests["num_decode_tokens_actual"] == real.requests["num_decode_tokens"]).all()
    assert sim.tokens.groupby("request_id").size().tolist() == sim.requests["num_decode_tokens"].tolist()
    comparison = Path(paths.comparisons) / rec.comparison_id
    assert read_meta(comparison / "comparison_meta.json", "comparison")["status"] == "complete"
    for fig in ("cdf.png", "scatter.png", "timeline.png", "step_time.png"):
        assert (comparison / "figs" / fig).stat().st_size > 10_000
    table = headline_text(comparison)
    assert "TTFT" in table and "TPOT" in table and "E2E" in table
    if backend == "native":  # vidur-sim ran with the KV pool the real run recorded
        assert sim.meta["inputs"]["real_run"] == rec.real_run
        assert sim.meta["settings"]["cache"]["num_blocks"] == real.meta["backend"]["num_blocks"]
        assert real.meta["engine_stats"]["compilations_during_run"] == 0
        assert "kv_tokens" in real.iterations.columns
    verdict = read_meta(Path(paths.profiling) / rec.bundle_id / "profile_meta.json")["verdict"]
    assert f"Simulated with bundle `{rec.bundle_id}`: verdict **{verdict}**" in (comparison / "summary.md").read_text()

    # Again: nothing measured or simulated twice, the same comparison comes back.
    before = {p.name for p in Path(paths.real_runs).iterdir()}
    again = run_experiment(cfg)
    assert again == rec
    assert {p.name for p in Path(paths.real_runs).iterdir()} == before
    record = json.loads((Path(paths.root) / "experiments" / f"{rec.point_key}.json").read_text())
    assert record["comparison_id"] == rec.comparison_id
