"""Bring your own model, profile and results (the README's commands), on the CPU: Llama-2-7B from its shipped config,
Vidur's own H100 profile layout imported as an unverified bundle, Vidur's length-only trace without a tokenizer, a
2048-token budget that packs prompts together, and a ground truth known per request only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.run_import import import_run
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim
from gpu_simulate_test.workloads.spec import generate_workload

FIX = Path(__file__).resolve().parents[1] / "fixtures"
VIDUR_PROFILE = FIX / "vidur_profile" / "h100" / "meta-llama" / "Llama-2-7b-hf"
SETUP = ["model=llama-2-7b", "hardware=h100", "backend=sarathi", "backend.max_batch_tokens=2048"]
FAST_GRID = ["vidur.random_forrest.num_estimators=[8]", "vidur.k_fold_cv_splits=2"]
SLOWER = 1.25  # the stand-in ground truth: every duration since arrival 25% longer than simulated


def test_llama_2_7b_with_vidurs_profile_against_per_request_results(compose_app: Callable[..., Any],
                                                                    tmp_path: Path) -> None:
    # The workload: Vidur's own length-only trace, for a model whose vocabulary is not the offline tokenizer's.
    workload = generate_workload(compose_app("workload_spec", [
        "workload=vidur_trace", f"workload.lengths.path={FIX / 'traces' / 'vidur_trace.csv'}", "model=llama-2-7b"]))
    assert read_meta(workload / "workload_meta.json")["tokenizer"] is None

    # 1. Vidur's profile as a bundle, through the CLI as the README runs it.
    cli = str(Path(sys.executable).parent / "vidur-profile")
    done = subprocess.run([cli, f"paths.root={tmp_path}", "mode=import", f"source={VIDUR_PROFILE}", *SETUP[:3]],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "imported from Vidur's own files" in done.stdout and "verdict unverified: imported bundle" in done.stdout
    assert "vidur-sim and experiment use it only with accept_bundle=true" in done.stdout
    (bundle,) = (tmp_path / "profiling").iterdir()
    root = load_profiling_root(bundle)
    assert (root.meta["source"], root.meta["verdict"]) == ("imported", "unverified")

    # 2. Simulate: an unverified bundle only with accept_bundle=true (issue 14's gate).
    sim_args = [*SETUP, f"workload_id={workload.name}", f"profiling_root={bundle.name}", *FAST_GRID]
    with pytest.raises(InputError, match="verdict unverified: imported bundle.*accept_bundle=true"):
        run_vidur_sim(compose_app("vidur_sim", sim_args))
    sim_dir = run_vidur_sim(compose_app("vidur_sim", [*sim_args, "accept_bundle=true"]))
    sim = load_run(sim_dir, "vidur_run")
    assert sim.meta["bundle_verdict"]["verdict"] == "unverified"
    assert sim.meta["settings"]["model_name"] == "gst/llama-2-7b" and sim.meta["inputs"]["bundle_id"] == bundle.name
    assert len(sim.requests) == 4 and (sim.requests["ttft_ns"] > 0).all()
    assert sim.iterations["num_prefill_tokens"].max() == 2048  # the 4012-token prompt in chunks of the budget

    # 3. The ground truth, per request only (TTFT, E2E, output length), imported and compared.
    req = sim.requests
    csv = tmp_path / "vllm_per_request.csv"
    pd.DataFrame({"request_id": req["request_id"], "ttft_ms": req["ttft_ns"] * SLOWER / 1e6,
                  "e2e_ms": req["e2e_ns"] * SLOWER / 1e6, "output_tokens": req["num_decode_tokens"]}).to_csv(csv, index=False)
    real_dir = import_run(compose_app("compare_runs", ["mode=import", "import_format=requests_csv", f"import_file={csv}",
                                                       f"workload_id={workload.name}"]))
    out = compare_runs(compose_app("compare_runs", [f"real_run={real_dir.name}", f"sim_run={sim_dir.name}"]))
    stats = read_table(out / "tables" / "stats.csv", COMPARISON_STATS)
    headline = stats[stats["metric"].isin(["ttft", "tpot", "e2e"])]
    assert np.allclose(headline["error_pct"], 100 * (1 / SLOWER - 1), atol=0.01)  # -20%: the simulation is faster
    assert "itl" not in set(stats["metric"])
    assert "ITL cannot be compared: no request has every token's time in both runs" in (out / "summary.md").read_text()
