"""vidur-profile end to end on qwen3-tiny / CPU with a small grid, read back by Vidur's own predictor."""

from __future__ import annotations

import gc
from dataclasses import replace
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.engine import source_fingerprint
from gpu_simulate_test.errors import EnvironmentUnavailableError, GstError, InputError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.schemas import (
    ATTENTION_RAW_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    MLP_RAW_PROFILE,
    VALIDATION_CHECK,
)
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S
from gpu_simulate_test.vidur_ext.profiler.bundle import (
    HOST_GRID_PASSES,
    QuietProgress,
    _correction_record,
    _time_host_grid,
    build_bundle,
    bundle_id,
)
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid
from gpu_simulate_test.vidur_ext.profiler.iterations import ShapeSamples, StepTimer
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import head_term, host_share_term
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.verdict import _correction, bundle_verdict

SMALL = [
    "profile.max_tokens=64", "profile.max_kv_tokens=128", "profile.repeat_iters=3", "profile.warmup_iters=1",
    "profile.iteration_samples=3", "profile.iteration_rounds=1",
    "profile.fit=[prefill:16,prefill:48,decode:1x32,decode:1x96]",
    "profile.validation=[]", "profile.test=[prefill:32,decode:1x64,decode:4x64]", "profile.variants=[fold]",
]


def _cfg(compose_app, extra: list[str] = ()):
    return compose_app("vidur_profile", [*SMALL, *extra])


def test_bundle_builds_is_reused_and_loads_in_vidur(compose_app) -> None:
    cfg = _cfg(compose_app, ["profile.iteration_rounds=2"])
    result = build_bundle(cfg, vidur_predict(cfg))
    root = load_profiling_root(result.path)
    assert not result.reused and root.bundle_id == bundle_id(cfg) == result.path.name
    meta = read_meta(result.path / "profile_meta.json", kind="profile_bundle")
    assert meta["backend_measured"] == "hf-generate" and meta["config"]["model"]["name"] == "qwen3-tiny"
    assert list(result.check["shape"]) == ["prefill:32", "decode:1x64"]  # held-out order; 4x64 exceeds hf-generate's cap
    assert any(s.startswith("decode:4x64 (test)") for s in meta["skipped_shapes"])
    assert meta["variant"] == "fold" and meta["step_correction"] is None  # the only candidate (profile.variants)
    assert meta["held_out_check"]["num_shapes"] == 2 and math.isfinite(meta["held_out_check"]["median_abs_error_pct"])
    assert meta["fit_check"]["num_shapes"] == 4 and math.isfinite(meta["fit_check"]["median_abs_error_pct"])
    # The bundle vouches for itself: its held-out errors, the tolerance, the host's load and the verdict they give.
    check = meta["held_out_check"]
    assert check["tolerance_pct"] == 10.0 and check["max_abs_error_pct"] >= check["median_abs_error_pct"]
    assert meta["source"] == "measured" and meta["host_load"]["wall_s"] > 0 and meta["host_load"]["busy"] in (True, False)
    assert meta["verdict"] == result.verdict.verdict == bundle_verdict(meta).verdict
    assert result.verdict.verdict in ("pass", "fail", "busy")
    iters = read_table(result.path / "iterations.csv", ITERATION_PROFILE)
    assert (iters["num_samples"] == 2 * 3).all()  # two round-robin rounds of iteration_samples=3, pooled
    assert meta["sdpa_kernels"] == ["flash", "efficient", "math"]
    assert min(meta["overhead_fit"].values()) >= 0  # negative corrections go into the scale, never into clipped rows
    # The raw rows are kept, so the bundle can be re-folded offline: scaled + folded they give mlp.csv again.
    raw_mlp = read_table(result.path / "mlp_raw.csv", MLP_RAW_PROFILE)
    read_table(result.path / "attention_raw.csv", ATTENTION_RAW_PROFILE)
    folded = read_table(result.path / "mlp.csv", MLP_PROFILE)
    o = meta["overhead_fit"]
    n = raw_mlp["num_tokens"]
    expect = o["scale"] * raw_mlp["time_stats.mlp_up_proj.median"]
    assert (abs(folded["time_stats.mlp_up_proj.median"] - expect.clip(lower=1e-6)) < 1e-9).all()
    expect_add = (o["scale"] * raw_mlp["time_stats.add.median"]).clip(lower=1e-6) + (o["c_iter_ms"] + o["c_token_ms"] * n) / meta["config"]["model"]["num_layers"]
    assert (abs(folded["time_stats.add.median"] - expect_add) < 1e-6).all()
    # Vidur's own predictor classes, through vidur_ext.predictor, give finite positive times.
    pred = vidur_predict(cfg)(result.path, [BatchShape.parse(s) for s in ("prefill:40", "decode:1x100", "mixed:24+1x8")])
    assert all(math.isfinite(p) and p > 0 for p in pred)
    again = build_bundle(cfg, vidur_predict(cfg))
    assert again.reused and again.path == result.path and again.check.equals(result.check) and again.verdict == result.verdict


def test_a_bundle_derived_again_from_another_builds_measurements(compose_app, tmp_path: Path) -> None:
    """mode=rederive: the same measurements derived again (no device) give the same bundle but for the record of where
    they came from; it refuses a source of another request, one without its raw rows, and an existing target."""
    import shutil

    from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile

    cfg = _cfg(compose_app, ["backend=native", "backend.max_requests_per_batch=4", "backend.max_batch_tokens=64",
                             "profile.variants=[operators,step,head]", "profile.validation=[prefill:24,decode:2x48]",
                             "profile.test=[prefill:32,decode:1x64,decode:4x64]"])
    built = build_bundle(cfg, vidur_predict(cfg))
    elsewhere = replace(cfg, paths=replace(cfg.paths, profiling=str(tmp_path / "elsewhere")), mode="rederive",
                        source=str(built.path))
    again = run_vidur_profile(elsewhere)
    assert again.path.name == built.path.name and again.path != built.path and not again.reused
    assert again.verdict == built.verdict and again.check.equals(built.check)
    for name in ("mlp.csv", "attention.csv", "mlp_raw.csv", "attention_raw.csv", "iterations.csv",
                 "held_out_check.csv", "validation_check.csv"):
        assert (again.path / name).read_bytes() == (built.path / name).read_bytes(), name
    first, second = (json.loads((r / "profile_meta.json").read_text()) for r in (built.path, again.path))
    derived = second.pop("derived_from")
    assert derived["id"] == built.path.name and derived["content"] == load_profiling_root(built.path).content
    assert {k: v for k, v in first.items() if k != "provenance"} == {k: v for k, v in second.items() if k != "provenance"}
    with pytest.raises(InputError, match="exists"):  # never over a bundle
        run_vidur_profile(elsewhere)
    with pytest.raises(InputError, match="already today's bundle"):
        run_vidur_profile(replace(elsewhere, paths=cfg.paths))
    with pytest.raises(InputError, match="another request .*profile differ"):
        run_vidur_profile(replace(elsewhere, profile=replace(elsewhere.profile, iteration_samples=4)))
    bare = tmp_path / "bare" / built.path.name
    shutil.copytree(built.path, bare)
    (bare / "mlp_raw.csv").unlink()
    with pytest.raises(InputError, match="lacks mlp_raw.csv"):
        run_vidur_profile(replace(elsewhere, paths=replace(cfg.paths, profiling=str(tmp_path / "third")),
                                  source=str(bare)))
    with pytest.raises(InputError, match="needs source"):
        run_vidur_profile(replace(elsewhere, source=None))
    # the build timed a step after idle gaps, from which the idle term comes; a source without them (a build before
    # 2026-12-04's idle term) cannot give today's bundle
    idle = first["idle_timing"]
    assert idle["nominal_gap_ms"][0] == 0.0 and len(idle["gap_ms"]) == len(idle["wake_ms"]) == len(idle["wall_ms"])
    assert first["idle_start"]["gap_ms"] and all(g > 0 for g in first["idle_start"]["gap_ms"])
    older = tmp_path / "older" / built.path.name
    shutil.copytree(built.path, older)
    meta = json.loads((older / "profile_meta.json").read_text())
    meta.pop("idle_timing")
    (older / "profile_meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="lacks idle_timing"):
        run_vidur_profile(replace(elsewhere, paths=replace(cfg.paths, profiling=str(tmp_path / "fourth")),
                                  source=str(older)))


def test_a_step_bundle_holds_its_fitted_correction_to_the_cap(compose_app) -> None:
    # The step variant alone: its fitted correction's share of every checked step is recorded apart, within the cap
    # it was fitted under, and that share is what the verdict reads.
    cfg = _cfg(compose_app, ["profile.variants=[step]"])
    meta = read_meta(build_bundle(cfg, vidur_predict(cfg)).path / "profile_meta.json", kind="profile_bundle")
    corr = meta["correction"]
    assert meta["variant"] == "step" and corr["cap_pct"] == 10.0 and meta["step_correction"] is not None
    assert corr["max_fitted_share_pct"] <= 10.0 + 1e-6
    assert corr["max_fitted_share_pct"] == max(v["max"] for v in corr["fitted_share_pct"].values() if v)
    assert _correction(meta) == (corr["max_fitted_share_pct"], 10.0)  # what the verdict holds to the cap


def test_head_variant_needs_the_native_engine(compose_app) -> None:
    """The head variant times the native engine's own head: listed for another backend, the build stops at once."""
    cfg = _cfg(compose_app, ["profile.variants=[operators,head]"])
    assert cfg.backend.name != "native"
    with pytest.raises(InputError, match="head"):
        build_bundle(cfg, vidur_predict(cfg))


def test_native_bundle_times_the_engines_own_ops(compose_app, monkeypatch) -> None:
    """backend=native: the rows come from the engine's layer methods and kernels (the reference ops on the CPU), the
    fused ops carry the costs of the ones they absorb (``add`` and the KV store are 0), the whole iterations come
    from the driver's own steps (a later chunk of a long prompt too), the operators and the capped step correction
    are fitted on the fit shapes, the step's work outside its layers is timed for the head variant, validation
    chooses, the test shapes are checked against both baselines, and Vidur reads the bundle."""
    cfg = _cfg(compose_app, ["backend=native", "backend.max_requests_per_batch=4", "backend.max_batch_tokens=64",
                             "profile.variants=[operators,step,head]",
                             "profile.validation=[prefill:24,decode:2x48]",
                             "profile.test=[prefill:32,prefill:32@64,decode:1x64,decode:4x64]"])
    conditions, measure = [], StepTimer.measure

    def watched(self, *args, **kwargs):  # the conditions each shape is timed in
        conditions.append((gc.isenabled(), sys.getswitchinterval()))
        return measure(self, *args, **kwargs)

    monkeypatch.setattr(StepTimer, "measure", watched)
    interval = sys.getswitchinterval()
    result = build_bundle(cfg, vidur_predict(cfg))
    # every step timed as real-bench runs its own: the cyclic GC paused, the GIL's switch interval at real-bench's;
    # both as they were afterwards
    assert conditions and {gc_on for gc_on, _ in conditions} == {False}
    assert all(s == pytest.approx(SWITCH_INTERVAL_S) for _, s in conditions)  # the interpreter stores it in us
    assert gc.isenabled() and sys.getswitchinterval() == interval
    meta = read_meta(result.path / "profile_meta.json", kind="profile_bundle")
    assert meta["backend_measured"] == "native" and meta["skipped_shapes"] == []
    assert meta["engine_code"] == source_fingerprint()  # the engine it was built on, as real runs record it
    assert list(result.check["shape"]) == ["prefill:32", "prefill:32@64", "decode:1x64", "decode:4x64"]
    assert meta["held_out_check"]["num_shapes"] == 4 and math.isfinite(meta["held_out_check"]["median_abs_error_pct"])
    raw_mlp = read_table(result.path / "mlp_raw.csv", MLP_RAW_PROFILE)
    raw_att = read_table(result.path / "attention_raw.csv", ATTENTION_RAW_PROFILE)
    assert (raw_mlp["time_stats.add.median"] == 0).all() and (raw_att["time_stats.attn_kv_cache_save.median"] == 0).all()
    for op in ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
               "mlp_up_proj", "mlp_act", "mlp_down_proj"):
        assert (raw_mlp[f"time_stats.{op}.median"] > 0).all(), op
    assert (raw_att["attention_backend"] == "native-reference").all()
    assert (raw_att[raw_att["is_prefill"]]["time_stats.attn_prefill.median"] > 0).all()
    assert (raw_att[~raw_att["is_prefill"]]["time_stats.attn_decode.median"] > 0).all()
    iters = read_table(result.path / "iterations.csv", ITERATION_PROFILE).set_index("shape")
    assert len(iters) == 10 and (iters["num_samples"] == 3).all()
    assert list(iters["role"].unique()) == ["fit", "validation", "test"]
    # 4 requests of 64 tokens, filled 64 tokens a step: the first ones decode while the others prefill
    assert iters.loc["decode:4x64", "decode_kv_measured"] > 64 + 1 and pd.isna(iters.loc["prefill:32@64", "decode_kv_measured"])
    # the variants: operators as measured (mlp.csv is mlp_raw.csv), the step correction on top if validation chose it
    assert read_table(result.path / "mlp.csv", MLP_PROFILE).equals(raw_mlp)
    val = read_table(result.path / "validation_check.csv", VALIDATION_CHECK)
    assert sorted(set(val["variant"])) == ["head", "operators", "step"] and len(val) == 6
    assert sorted(set(val["shape"])) == ["decode:2x48", "prefill:24"]  # as configured (predicted at the measured KV)
    medians = val.assign(a=val["error_pct"].abs()).groupby("variant")["a"].median()
    assert meta["variant"] == medians.idxmin() == meta["validation_check"]["chosen"]
    assert (meta["step_correction"] is not None) is (meta["variant"] == "step")
    assert (meta["outside_layers"] is not None) is (meta["variant"] == "head")
    # a native bundle's rows are read where they were measured: prefill attention at the KV before the chunk, token
    # rows at the step's own tokens, batched decodes without Vidur's overhead factor (step_correction.RowKeys)
    # (``prefill_chunks: one_wave`` and ``token_rows: graph_bucket`` on a GPU only: tests/gpu/test_native_gpu.py)
    assert meta["row_keys"] == {"prefill_attention_kv": "before_chunk", "token_rows": "exact",
                                "decode_batching": "as_measured", "prefill_chunks": "summed",  # the CPU's reference
                                "prefill_wave_blocks": 0, "prefill_block_q": 0,  # ops run a step's chunks in turn,
                                "graph_batch_sizes": [], "graph_token_sizes": [],  # with no graph to pad a step to
                                "token_fit": "every_row",  # every token row read back as measured
                                "decode_attention_kv": "mean",  # decode attention at the mean KV, not rounded up
                                "decode_attention_batch": "between_measured",  # and between measured batch sizes,
                                "prefill_attention_chunk": "between_measured",  # prompt chunks between measured sizes,
                                "prefill_attention_kv_read": "between"}  # at the KV itself, not rounded up
    assert meta["decode_graph"] is None and meta["chunk_graph"] is None  # no CUDA graph runs a step on the CPU:
    # no step graph terms
    # the head variant's term: the step's work outside its layers, timed at every token point with as many sampling
    # rows as tokens up to the batch cap, by those rows (the step's requests)
    head = meta["head_timing"]
    grid = build_grid(cfg.model, cfg.backend, cfg.profile)
    assert head["num_tokens"] == grid.token_points and head["rows"] == [min(n, 4) for n in grid.token_points]
    assert all(ms > 0 for ms in head["ms"])
    term = head_term(head)
    assert term.requests == (1, 2, 3, 4)
    head_val = val[val["variant"] == "head"].set_index("shape")["predicted_ns"]
    ops_val = val[val["variant"] == "operators"].set_index("shape")["predicted_ns"]
    added = (head_val - ops_val) / 1e6
    # ... and the host's share of a step (wall less device: on the CPU a launch runs the step), on every shape and on
    # the request grid: first chunks packed at their start (an idle engine, or beside running decodes), the rest ahead,
    # as the engine recorded
    assert iters["host_median_ns"].notna().all()
    assert iters["packed_at_start"].to_dict() == {s: float(s.startswith("prefill:") and "@" not in s) for s in iters.index}
    timing = meta["host_timing"]  # KV 64 (half the context), a first chunk of 60 (the budget less the cap)
    assert timing["shape"] == ["decode:1x64", "prefill:60", "decode:2x64", "mixed:60+1x64", "decode:3x64",
                               "mixed:60+2x64", "decode:4x64", "mixed:60+3x64"]
    assert timing["packed_at_start"] == [0.0, 1.0] * 4 and timing["packed_otherwise"] == []
    assert all(ms > 0 for ms in timing["host_ms"]) and all(w > h for w, h in zip(timing["wall_ms"], timing["host_ms"]))
    assert timing["tokens"] == [1, 60, 2, 61, 3, 62, 4, 63] and timing["eager"] == [False] * 8  # the CPU: no graphs
    assert len(timing["wall_spread_pct"]) == 8 and all(p >= 0 for p in timing["wall_spread_pct"])  # over 3 passes
    host, record = host_share_term({k: v for k, v in timing.items() if k != "packed_otherwise"})
    assert record == timing and host.ahead.requests == host.serial.requests == (1, 2, 3, 4)
    assert host.serial.ms == tuple(timing["host_ms"][1::2])
    assert added.loc["prefill:24"] == pytest.approx(term.at(1) + host.at(1, True), abs=2e-6)  # one row sampled
    assert added.loc["decode:2x48"] == pytest.approx(term.at(2) + host.at(2, False), abs=2e-6)
    if meta["variant"] == "head":
        assert meta["outside_layers"] == term.to_dict() and meta["host_term"] == host.to_dict()
    else:
        assert meta["host_term"] is None
    corr = meta["correction"]
    assert corr["variant"] == meta["variant"] and (corr["cap_pct"] == 10.0) is (meta["variant"] == "step")
    if meta["variant"] != "head":  # the fitted correction is capped on every fit shape (0 for operators); the
        assert corr["share_pct"]["fit"]["max"] <= 10.0 + 1e-6  # measured head term is not (the CPU's tiny model:
        # its 151,936-row LM head outweighs its layers)
    if meta["variant"] == "step":  # the share the cap holds: the fitted part's (no decode graph term on the CPU)
        assert corr["max_fitted_share_pct"] == pytest.approx(corr["max_share_pct"], rel=1e-6)
        assert corr["fitted_share_pct"]["fit"]["max"] <= 10.0 + 1e-6
    else:
        assert "max_fitted_share_pct" not in corr and "fitted_share_pct" not in corr
    # the test check: the bundle and both baselines fitted on the fit shapes, in the table and in the record
    check = read_table(result.path / "held_out_check.csv", HELD_OUT_CHECK)
    assert {"constant_ns", "linear_ns", "constant_error_pct", "linear_error_pct"} <= set(check.columns)
    fit_ms = iters[iters["role"] == "fit"]["trimmed_mean_ns"] / 1e6
    assert (check["constant_ns"] == int(round(float(np.median(fit_ms)) * 1e6))).all()
    errors = meta["baseline_check"]["errors"]
    assert set(errors) == {"bundle", "constant", "linear"}
    assert errors["bundle"]["median_abs_error_pct"] == pytest.approx(meta["held_out_check"]["median_abs_error_pct"])
    assert meta["verdict"] == bundle_verdict(meta).verdict


class _DriftingTimer:
    """A step timer whose host slows every step by 10% for a few seconds: the two measurements after the first."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def measure(self, backend, recorder, shape: BatchShape, probe=None) -> ShapeSamples:
        slow = 1.1 if len(self.calls) in (1, 2) else 1.0
        self.calls.append(str(shape))
        wall = 1_000_000 * shape.batch_size * slow  # 1 ms a request; its device time 0.9 of it
        return ShapeSamples(np.full(3, int(wall)), 8.0, np.full(3, int(0.9 * wall)), np.zeros(3, dtype=bool))


def test_the_host_grid_is_timed_in_interleaved_passes_and_keeps_each_shapes_median_pass() -> None:
    # One pass timed neighbouring request counts seconds apart, so a host that drifted for a few seconds moved them
    # together (2026-12-04: one build's decodes of 5-12 requests 3% slow); passes over the whole grid spread each
    # count over moments far apart, and the median pass drops the one a drift hit.
    shapes = [BatchShape.parse(s) for s in ("decode:1x8", "decode:2x8", "decode:3x8")]
    timer = _DriftingTimer()
    with QuietProgress() as progress:
        record = _time_host_grid(None, timer, None, None, shapes, False, progress)
    assert HOST_GRID_PASSES == 3 and timer.calls == [str(s) for s in shapes] * 3  # interleaved, not back to back
    assert record["shape"] == [str(s) for s in shapes] and record["requests"] == [1, 2, 3]
    assert record["wall_ms"] == pytest.approx([1.0, 2.0, 3.0])  # the drifted pass dropped, not averaged in
    assert record["host_ms"] == pytest.approx([0.1, 0.2, 0.3])
    assert record["wall_spread_pct"] == pytest.approx([0.0, 10.0, 10.0])  # ... and shown
    assert record["at_start"] == [False] * 3 and record["packed_at_start"] == [0.0] * 3
    with QuietProgress() as progress:  # nothing to time (off a GPU): an empty record, no pass
        empty = _time_host_grid(None, _DriftingTimer(), None, None, [], False, progress)
    assert empty["shape"] == [] and set(empty) == set(record)


def test_gpu_hardware_without_gpu_leaves_nothing(compose_app, tmp_path: Path) -> None:
    cfg = _cfg(compose_app, ["hardware=h100", "profile.held_out=[]"])  # gpu.yaml's test set is held_out (H100 bundles)
    with pytest.raises(EnvironmentUnavailableError, match="GPU"):
        build_bundle(cfg, vidur_predict(cfg))
    assert not (Path(cfg.paths.profiling)).exists() or not any(Path(cfg.paths.profiling).iterdir())


def test_iteration_rounds_below_one_fail_before_measuring(compose_app) -> None:
    cfg = _cfg(compose_app, ["profile.iteration_rounds=0"])
    with pytest.raises(InputError, match="iteration_rounds"):
        build_bundle(cfg, vidur_predict(cfg))
    assert not Path(cfg.paths.profiling).exists() or not any(Path(cfg.paths.profiling).iterdir())


def test_model_the_backend_cannot_build(compose_app) -> None:
    cfg = _cfg(compose_app, ["model.architecture=mamba"])
    with pytest.raises(InputError, match="architecture"):
        build_bundle(cfg, vidur_predict(cfg))
    assert not any(Path(cfg.paths.profiling).iterdir())


def test_unwritable_root(compose_app, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cfg = _cfg(compose_app, [f"paths.profiling={blocker}/profiling"])
    with pytest.raises(GstError, match="paths.root"):
        build_bundle(cfg, vidur_predict(cfg))
    assert blocker.is_file()


def test_mixed_shape_whose_decoders_fill_for_longer_than_they_decode(compose_app, monkeypatch) -> None:
    """``mixed:8+8x64`` on the native engine with a 16-token budget: the 8 decoders prefill over 32 steps, longer
    than the ``4 x samples + 16`` tokens a mixed shape's decoders used to generate, so the first of them finished
    before the last one decoded and no step ever held all 8 (the H200 campaign's first bundle waited out its 600 s
    on ``mixed:384+64x512``). Their decode lengths now outlast the filling, as a decode shape's do."""
    from gpu_simulate_test.vidur_ext.profiler import iterations

    monkeypatch.setattr(iterations, "TIMEOUT_S", 60.0)  # a regression fails in a minute, not in ten
    cfg = compose_app("vidur_profile", [
        *SMALL, "backend=native", "backend.num_blocks=256", "backend.max_batch_tokens=16",
        "profile.fit=[prefill:16,decode:1x32,mixed:8+8x64]", "profile.test=[decode:2x32]"])
    result = build_bundle(cfg, vidur_predict(cfg))
    iters = read_table(result.path / "iterations.csv", ITERATION_PROFILE)
    assert "mixed:8+8x64" in set(iters["shape"])


def test_a_later_chunk_beside_decodes_is_timed_where_it_runs(compose_app, monkeypatch) -> None:
    """``mixed:4@16+8x64``: a 20-token prompt joins 8 decoders under a 16-token budget, so it runs in chunks of 8 (the
    budget less the decodes), 8 + 8 + 4: the shape is its last, 4 tokens at 16 cached; each prompt runs all its chunks
    before the next joins. Its steps are timed, beside a first chunk's own shape (``mixed:8+8x64``); a prefix the
    chunks never start at is skipped with why."""
    from gpu_simulate_test.vidur_ext.profiler import iterations

    monkeypatch.setattr(iterations, "TIMEOUT_S", 60.0)
    cfg = compose_app("vidur_profile", [
        *SMALL, "backend=native", "backend.num_blocks=256", "backend.max_batch_tokens=16",
        "profile.fit=[prefill:16,decode:1x32,mixed:8+8x64,mixed:4@16+8x64,mixed:4@12+8x64]",
        "profile.test=[decode:2x32]"])
    result = build_bundle(cfg, vidur_predict(cfg))
    iters = read_table(result.path / "iterations.csv", ITERATION_PROFILE)
    assert {"mixed:8+8x64", "mixed:4@16+8x64"} <= set(iters["shape"])
    later = iters[iters["shape"] == "mixed:4@16+8x64"].iloc[0]
    assert later["num_prefill_tokens"] == 4 and later["num_decode_tokens"] == 8 and later["num_samples"] >= 1
    meta = json.loads((result.path / "profile_meta.json").read_text())
    assert any(s.startswith("mixed:4@12+8x64 (fit): a prompt beside 8 decodes is cut into chunks of 8")
               for s in meta["skipped_shapes"])


def _shipped_shapes() -> list[str]:
    """Every decode and mixed shape of the shipped GPU profiles (their budget: the native default, 512)."""
    import yaml

    root = Path(__file__).resolve().parents[2] / "configs" / "profile"
    found: list[str] = []
    for name in ("gpu.yaml", "h200.yaml"):
        cfg = yaml.safe_load((root / name).read_text())
        found += [s for key in ("fit", "validation", "test", "held_out") for s in cfg.get(key) or []]
    return sorted({s for s in found if not s.startswith("prefill")})


@pytest.mark.parametrize("text", _shipped_shapes())
def test_decoders_outlast_the_filling_under_decodes_first(text: str) -> None:
    """Sarathi's budget goes to the decodes first, so the prompts of a shape's requests fill ever slower as more of
    them decode (``decode:128x4096`` at budget 512: ~1,180 steps, not the 1,024 + 128 once assumed; the H200's
    bundle never saw its 128 requests decode together). Stepped here as the policy steps them: the first request
    must still be decoding, with ``samples`` steps to spare, when the last one decodes."""
    from types import SimpleNamespace

    from gpu_simulate_test.vidur_ext.profiler.iterations import ShapeSamples, StepTimer

    shape, budget, samples = BatchShape.parse(text), 512, 5
    timer = StepTimer.__new__(StepTimer)  # _lengths reads the samples and the budget only
    timer.samples, timer.limits = samples, SimpleNamespace(token_budget=budget)
    first, _ = timer._lengths(shape)
    left = [prompt for prompt, _ in first]  # prompt tokens still to prefill, per request
    decoded = [0] * len(first)
    steps = 0
    while left[-1] > 0:
        steps += 1
        room = budget - sum(1 for n in left if n == 0)
        for i, n in enumerate(left):
            if n == 0:
                decoded[i] += 1
            elif room > 0:
                take = min(n, room)
                left[i] -= take
                room -= take
    assert decoded[0] + samples + 1 <= first[0][1], (steps, decoded[0], first[0][1])


def test_a_build_with_graph_buckets_measures_both_step_graph_terms_on_its_grid(compose_app, monkeypatch) -> None:
    """Where the engine has CUDA graphs (faked here: the CPU engine's buckets, as a GPU's runner reports them), the
    build reads the grid's decodes and chunk steps that a graph runs against its operators and the work outside the
    layers: the decode graph term by decodes, the chunk graph term by requests, each the grid's device time less
    those parts (the CPU's walls, so only the wiring is checked here, not the engine's numbers), in the bundle that
    vidur-sim reads."""
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.step_correction import step_terms

    monkeypatch.setattr(EngineLayerOps, "graph_buckets", lambda self: ([1, 2, 4], [16, 32, 64]))
    cfg = _cfg(compose_app, ["backend=native", "backend.max_requests_per_batch=4", "backend.max_batch_tokens=64",
                             "profile.variants=[head]", "profile.validation=[prefill:24,decode:2x48]",
                             "profile.test=[prefill:32,decode:1x64,decode:4x64]"])
    root = build_bundle(cfg, vidur_predict(cfg)).path
    meta = read_meta(root / "profile_meta.json", kind="profile_bundle")
    assert meta["row_keys"]["token_rows"] == "graph_bucket" and meta["variant"] == "head"
    timing = meta["host_timing"]  # decodes of 1-4 (graphs 1, 2, 4) and a 60-token chunk beside 0-3 (graph 64 x 4)
    assert timing["eager"] == [False] * 8
    terms = step_terms(meta)
    assert terms.graph is not None and terms.graph.requests == (1, 2, 3, 4) and terms.graph.graphs == (1, 2, 4, 4)
    assert terms.chunk is not None and terms.chunk.requests == (1, 2, 3, 4) and terms.chunk.max_graph_tokens == 64
    assert all(math.isfinite(t) for t in (*terms.graph.ms, *terms.chunk.ms))
    # vidur-sim adds the chunk term to a step with a chunk only: the validation prompt of 24 tokens (graph 32 x 1)
    val = read_table(root / "validation_check.csv", VALIDATION_CHECK).set_index("shape")
    shapes = [BatchShape.parse("prefill:24"), BatchShape.parse("decode:2x48")]
    with_chunk, without = (vidur_predict(cfg)(r, shapes) for r in (root, _with_terms(root, replace(terms, chunk=None))))
    assert with_chunk[0] - without[0] == pytest.approx(terms.chunk.at(1), abs=1e-6)
    assert with_chunk[1] == pytest.approx(without[1], abs=1e-9)
    assert val.loc["prefill:24", "predicted_ns"] == pytest.approx(with_chunk[0] * 1e6, abs=1)


def test_under_the_vllm_policy_the_chunk_term_is_the_lone_prompts_in_its_own_graph(compose_app, monkeypatch) -> None:
    """The vllm policy runs no mixed step: its grid's only chunk step is a lone prompt (the budget less the cap, here
    past the profile's largest chunk: held to what the prefill rows cover), so the chunk graph term has one point, at
    one request, held to that prompt's graph."""
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.step_correction import step_terms

    monkeypatch.setattr(EngineLayerOps, "graph_buckets", lambda self: ([1, 2, 4], [16, 32, 64, 128]))
    cfg = _cfg(compose_app, ["backend=native", "backend.vidur_scheduler=vllm", "backend.max_requests_per_batch=4",
                             "backend.max_batch_tokens=128", "profile.variants=[head]",
                             "profile.validation=[prefill:24,decode:2x48]", "profile.test=[prefill:32,decode:1x64]"])
    meta = read_meta(build_bundle(cfg, vidur_predict(cfg)).path / "profile_meta.json", kind="profile_bundle")
    assert meta["host_timing"]["shape"] == ["decode:1x64", "prefill:64", "decode:2x64", "decode:3x64", "decode:4x64"]
    chunk = step_terms(meta).chunk
    assert chunk is not None and chunk.requests == (1,) and chunk.max_graph_tokens == 64
    assert chunk.at_step((64, 1), False, 3) == chunk.ms[0] and chunk.at_step((128, 1), False, 1) == 0.0


def _with_terms(root: Path, terms) -> Path:
    """A copy of the bundle at ``root`` whose meta carries ``terms`` (``StepTerms``) instead of its own."""
    import shutil

    copy = root.parent / f"{root.name}-copy"
    shutil.copytree(root, copy)
    meta = json.loads((copy / "profile_meta.json").read_text())
    (copy / "profile_meta.json").write_text(json.dumps({**meta, **terms.record()}))
    return copy


def test_prefill_wave_and_graph_buckets_read_from_the_engine(compose_app, monkeypatch) -> None:
    """What a GPU build writes into ``row_keys``, through the engine's own launch plan: one wave of the prefill launch
    is the SMs over the KV heads (one bf16 program of 8 warps an SM), a program 128 rows over the padded GQA group;
    the graph buckets are the runner's. Here the CPU engine stands in, its device and SM count faked (the H200's:
    tests/gpu/test_native_gpu.py); off a GPU there is neither."""
    import types

    import torch

    from gpu_simulate_test.backends import get_backend
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.profiler.iterations import ShapeSamples, StepTimer

    cfg = _cfg(compose_app, ["backend=native"])
    backend = get_backend("native")(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend.check_workload(StepTimer(cfg.backend, [BatchShape.parse("prefill:8")], 1).plan())  # sizes its pool
    backend.load()
    try:
        ops = EngineLayerOps(backend.native_engine())
        assert ops.prefill_wave() == (0, 0) and ops.graph_buckets() == ([], [])
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(multi_processor_count=132))
        ops.device, ops.dtype = torch.device("cuda", 0), torch.bfloat16
        group = cfg.model.num_attention_heads // cfg.model.num_kv_heads
        padded = 1 << (group - 1).bit_length()
        assert ops.prefill_wave() == (132 // cfg.model.num_kv_heads, 128 // padded)
    finally:
        backend.close()


def test_the_correction_record_holds_the_fitted_part_apart_from_measured_terms() -> None:
    # A step variant's prediction is the operators, the measured decode graph term and the fitted correction; the cap
    # holds the fitted part (fit_step_correction), so the record gives its share apart (the verdict reads it), while
    # share_pct counts everything beside the operators.
    final, raw = np.array([10.0, 10.0, 20.0]), np.array([8.0, 9.0, 19.0])  # fit, validation, test
    fitted = np.array([1.0, 0.5, -1.0])  # the first step's other 1 ms: its graph term
    record = _correction_record("step", 10.0, final, raw, np.array([1, 2]), fitted)
    assert record["cap_pct"] == 10.0 and record["max_share_pct"] == pytest.approx(20.0)
    assert record["max_fitted_share_pct"] == pytest.approx(10.0)
    assert record["fitted_share_pct"]["test"] == {"median": pytest.approx(5.0), "max": pytest.approx(5.0)}
    assert record["share_pct"]["fit"]["max"] == pytest.approx(20.0)
    assert "max_fitted_share_pct" not in _correction_record("head", 10.0, final, raw, np.array([1, 2]))
