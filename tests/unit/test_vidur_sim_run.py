"""vidur-sim end to end on hand-made constant profiles: schedules computed by hand, exact to the nanosecond."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.testing import constant_profile, make_workload
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits, load_profiling_root
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim

# Per layer: each of the 9 mlp.csv ops 0.1 ms, prefill attention 2 ms, decode attention 0.5 ms; qwen3-tiny has
# 2 layers and is GQA (4 q / 2 kv heads), so Vidur adds 10% to decode attention when 2+ requests decode together.
OP, PREFILL, DECODE, LAYERS = 0.1, 2.0, 0.5, 2
MS = 1_000_000
P = round(LAYERS * (9 * OP + PREFILL) * MS)  # one prefill: 5.8 ms
D1 = round(LAYERS * (9 * OP + DECODE) * MS)  # one decode: 2.8 ms
MIX = round(LAYERS * (9 * OP + PREFILL + DECODE) * MS)  # one prefill chunk + one decode: 6.8 ms
D2 = round(LAYERS * (9 * OP + DECODE * 1.1) * MS)  # two decodes: 2.9 ms
FAST_GRID = ["vidur.random_forrest.num_estimators=[8]", "vidur.k_fold_cv_splits=2"]


def _setup(compose_app: Callable[..., Any], tmp_path: Path, backend: str, requests, extra=(), max_kv=2048,
           max_tokens=512, **verdict: Any) -> Any:
    cfg = compose_app("vidur_sim", [f"backend={backend}", "workload_id=w", "profiling_root=b", *FAST_GRID, *extra])
    make_workload(Path(cfg.paths.workloads), "w", requests)
    limits = GridLimits(tokens_per_iteration=max_tokens, prefill_chunk=max_tokens, batch_size=32, request_tokens=max_kv,
                        block_size=int(cfg.backend.block_size))
    constant_profile(Path(cfg.paths.profiling), "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                     limits=limits, op=OP, prefill=PREFILL, decode=DECODE, **verdict)
    return cfg


def _token_times(run) -> dict[int, list[int]]:
    return {int(r): g.sort_values("token_index")["token_time_ns"].tolist() for r, g in run.tokens.groupby("request_id")}


def test_one_request_matches_hand_computation(compose_app, tmp_path: Path) -> None:
    cfg = _setup(compose_app, tmp_path, "hf-generate", [(3 * MS, 100, 5)])
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    assert _token_times(run)[0] == [3 * MS + P + k * D1 for k in range(5)]
    req = run.requests.iloc[0]
    assert req.ttft_ns == P and req.dispatch_time_ns == req.arrival_time_ns == 3 * MS
    assert run.iterations["requests"].tolist() == ["r0:100"] + ["r0:1"] * 4
    bundle = load_profiling_root(Path(cfg.paths.profiling) / "b")
    assert run.meta["inputs"] == {"workload_id": "w", "bundle_id": "b", "bundle_content": bundle.content}
    assert run.meta["bundle_verdict"]["verdict"] == "pass"
    assert run.meta["scheduler"]["name"] == "vllm" and run.meta["scheduler"]["batch_size_cap"] == 1
    assert run.meta["vidur_version"] == "0.0.26"


def test_two_overlapping_requests_under_sarathi(compose_app, tmp_path: Path) -> None:
    # r1 arrives during r0's prefill; at r0's prefill end sarathi batches r0's decode with r1's whole prompt.
    cfg = _setup(compose_app, tmp_path, "hf-continuous", [(0, 100, 3), (1 * MS, 50, 2)])
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    assert _token_times(run) == {0: [P, P + MIX, P + MIX + D2], 1: [P + MIX, P + MIX + D2]}
    it = run.iterations
    assert it["requests"].tolist() == ["r0:100", "r0:1;r1:50", "r0:1;r1:1"]
    assert it["start_time_ns"].tolist() == [0, P, P + MIX] and it["end_time_ns"].tolist() == [P, P + MIX, P + MIX + D2]
    assert run.meta["scheduler"]["chunk_size"] == 512 and run.meta["scheduler"]["batch_size_cap"] == 32


def test_prompts_packed_into_one_chunk_fit_the_predictor_grid(compose_app, tmp_path: Path) -> None:
    # The crash (KeyError: (1208,) in Vidur's rope lookup): 604-token prompts under a 2048-token budget.
    # Two arrive together and sarathi packs both into one 1208-token iteration, which the predictor grid must cover.
    cfg = _setup(compose_app, tmp_path, "hf-continuous", [(0, 604, 3), (0, 604, 3)],
                 ["backend.max_batch_tokens=2048"], max_tokens=2048)
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    assert run.iterations["requests"].tolist() == ["r0:604;r1:604", "r0:1;r1:1", "r0:1;r1:1"]
    p2 = round(LAYERS * (9 * OP + 2 * PREFILL) * MS)  # one iteration, two prefills
    assert _token_times(run) == {0: [p2, p2 + D2, p2 + 2 * D2], 1: [p2, p2 + D2, p2 + 2 * D2]}
    assert run.meta["settings"]["predictor_grid"]["prediction_max_tokens_per_request"] >= 1208


def test_counts_order_and_determinism_with_chunking_and_preemption(compose_app, tmp_path: Path) -> None:
    # sarathi: chunks of 64 tokens, 16-token blocks and only 12 of them, so decodes run out of KV and restart.
    reqs = [(i * MS // 2, 40 + 30 * (i % 3), 12 + i) for i in range(6)]
    extra = ["backend.max_batch_tokens=64", "backend.num_blocks=12", "backend.watermark_blocks_fraction=0.0"]
    cfg = _setup(compose_app, tmp_path, "sarathi", reqs, extra)
    first = run_vidur_sim(cfg)
    cfg.run_id = "again"
    second = run_vidur_sim(cfg)
    a, b = load_run(first, "vidur_run"), load_run(second, "vidur_run")
    assert a.meta["settings"]["num_restarts"] > 0
    assert a.requests["num_decode_tokens_actual"].tolist() == [d for _, _, d in reqs]
    for times in _token_times(a).values():
        assert all(x < y for x, y in zip(times, times[1:]))
    assert (a.iterations["num_prefill_tokens"] + a.iterations["num_decode_tokens"]).max() <= 64 + 6
    for name in ("request_metrics.csv", "token_metrics.csv", "iteration_metrics.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    settings = json.loads((first / "run_meta.json").read_text())["settings"]
    assert settings["cache"] == {"block_size": 16, "num_blocks": 12, "watermark_blocks_fraction": 0.0}
    assert not (Path.cwd() / "simulator_output").exists() or not any((Path.cwd() / "simulator_output").iterdir())


def _real_run(root: Path, run_id: str, backend: dict) -> None:
    """A real run's meta as the native driver records it (vidur-sim reads only ``backend`` from it)."""
    from gpu_simulate_test.io.meta import build_meta
    from gpu_simulate_test.io.runs import write_run_meta

    (root / run_id).mkdir(parents=True)
    write_run_meta(root / run_id, build_meta(kind="real_run", id=run_id, config={}, inputs={"workload_id": "w"},
                                             backend=backend))


def test_native_takes_the_kv_pool_its_real_run_recorded(compose_app, tmp_path: Path) -> None:
    """backend=native sizes its pool when it loads (num_blocks: null): vidur-sim simulates with the recorded count,
    which a pool too small for the workload shows (restarts), and refuses to guess one."""
    reqs = [(0, 60, 20), (0, 60, 20), (0, 60, 20)]  # 5 blocks of 16 each at the end
    cfg = _setup(compose_app, tmp_path, "native", reqs, ["backend.watermark_blocks_fraction=0"])
    from gpu_simulate_test.errors import InputError

    with pytest.raises(InputError, match=r"backend native: num_blocks is null.*real_run=<id> \(experiment does\)"):
        run_vidur_sim(cfg)
    _real_run(Path(cfg.paths.real_runs), "real-native", {"name": "native", "num_blocks": 9})
    _real_run(Path(cfg.paths.real_runs), "real-other", {"name": "hf-continuous", "num_blocks": 9})
    cfg.real_run = "real-other"
    with pytest.raises(InputError, match="real_run real-other ran backend 'hf-continuous', not 'native'"):
        run_vidur_sim(cfg)
    assert not Path(cfg.paths.vidur_runs).exists() or not any(Path(cfg.paths.vidur_runs).iterdir())
    cfg.real_run = "real-native"
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    assert run.meta["settings"]["cache"]["num_blocks"] == 9 and run.meta["settings"]["num_restarts"] > 0
    bundle = load_profiling_root(Path(cfg.paths.profiling) / "b")
    assert run.meta["inputs"] == {"workload_id": "w", "bundle_id": "b", "bundle_content": bundle.content,
                                  "real_run": "real-native", "real_run_num_blocks": 9}
    assert run.meta["scheduler"]["name"] == "sarathi" and run.meta["scheduler"]["chunk_size"] == 512


@pytest.mark.parametrize(
    "change, message",
    [
        ({"profiling_root": "nope"}, "neither a directory nor a bundle id"),
        ({"model": "qwen3-0.6b"}, "was measured for model='qwen3-tiny'"),
        ({"requests": [(0, 100, 3000)]}, "tokens of one request (prompt + decode): 3100 exceeds the profiled maximum 2048"),
        ({"requests": [(0, 40000, 2000)]}, "more than model qwen3-tiny's context of 40960"),
        ({"partial": "attention.csv"}, "lacks ['attention.csv']"),
        ({"verdict": {"held_out_error_pct": 62.0}}, "verdict fail: held-out median |error| 62.0% > tolerance 10%"),
        ({"verdict": {"busy": True}}, "verdict busy: built on a busy host: other processes used 2.00 CPU cores"),
        ({"verdict": {"held_out_error_pct": None}}, "verdict unverified: built before bundles recorded a verdict"),
    ],
)
def test_bad_inputs_fail_clearly_without_run_dir(compose_app, tmp_path: Path, change: dict, message: str) -> None:
    from gpu_simulate_test.errors import GstError

    cfg = _setup(compose_app, tmp_path, "hf-generate", change.get("requests", [(0, 100, 3)]), **change.get("verdict", {}))
    if "partial" in change:
        (Path(cfg.paths.profiling) / "b" / change["partial"]).unlink()
    if "profiling_root" in change:
        cfg.profiling_root = change["profiling_root"]
    if "model" in change:
        cfg = compose_app("vidur_sim", ["backend=hf-generate", "workload_id=w", "profiling_root=b", "model=qwen3-0.6b"])
    with pytest.raises(GstError) as err:
        run_vidur_sim(cfg)
    assert message in str(err.value)
    runs = Path(cfg.paths.vidur_runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_a_bundle_that_is_not_pass_simulates_only_when_accepted(compose_app, tmp_path: Path) -> None:
    cfg = _setup(compose_app, tmp_path, "hf-generate", [(0, 100, 3)], ["accept_bundle=true"], held_out_error_pct=62.0)
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    assert run.meta["config"]["accept_bundle"] is True
    assert run.meta["bundle_verdict"]["verdict"] == "fail" and run.meta["bundle_verdict"]["median_abs_error_pct"] == 62.0


def test_a_bundles_step_correction_is_added_to_every_simulated_step(compose_app, tmp_path: Path) -> None:
    """A bundle of the step variant: vidur-sim adds c_iter + c_token x tokens_8 to each step, exactly, records the
    correction, and the bundle's content fingerprint covers it (a simulation with the old correction is not current)."""
    from gpu_simulate_test.io.meta import read_meta, write_json

    cfg = _setup(compose_app, tmp_path, "hf-generate", [(3 * MS, 100, 3)])
    bundle = Path(cfg.paths.profiling) / "b"
    plain_content = load_profiling_root(bundle).content
    meta = read_meta(bundle / "profile_meta.json")
    write_json(bundle / "profile_meta.json", {**meta, "step_correction": {"c_iter_ms": 0.25, "c_token_ms": 0.001}})
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    prefill, decode = P + round((0.25 + 0.001 * 104) * MS), D1 + round((0.25 + 0.001 * 8) * MS)  # tokens: 104, 8
    assert _token_times(run)[0] == [3 * MS + prefill, 3 * MS + prefill + decode, 3 * MS + prefill + 2 * decode]
    assert run.meta["settings"]["step_correction"] == {"c_iter_ms": 0.25, "c_token_ms": 0.001, "c_first_ms": 0.0}
    assert run.meta["inputs"]["bundle_content"] == load_profiling_root(bundle).content != plain_content
