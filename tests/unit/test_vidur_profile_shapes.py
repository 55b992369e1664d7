"""Batch-shape strings, the grid and its limits: the contract vidur-sim relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.profile import ProfileConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.schemas import (
    ATTENTION_PROFILE,
    ATTENTION_RAW_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    MLP_RAW_PROFILE,
    markdown_table,
)
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid, ladder
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,kind,q,kv", [
    ("prefill:512", "prefill", [512], [512]),
    ("decode:3x100", "decode", [1, 1, 1], [101, 101, 101]),
    ("mixed:64+2x10", "mixed", [64, 1, 1], [64, 11, 11]),
    ("prefill:512@2048", "prefill", [512], [2560]),  # a later chunk: the KV after it holds the chunks before it too
    ("mixed:8@16+2x4", "mixed", [8, 1, 1], [24, 5, 5]),  # the last chunk of a 24-token prompt beside two decodes
])
def test_shapes_round_trip_and_vidur_batch(text: str, kind: str, q: list[int], kv: list[int]) -> None:
    shape = BatchShape.parse(text)
    assert str(shape) == text and shape.kind == kind
    assert shape.vidur_batch() == (q, kv)  # KV counted after the iteration, as Vidur's schedulers do


@pytest.mark.parametrize("bad", ["prefill:0", "decode:0x8", "decode:8", "mixed:8+2x0", "foo:1", "prefill:8@0",
                                 "mixed:8@0+2x4", "mixed:8+2x4@16"])
def test_bad_shapes_fail_clearly(bad: str) -> None:
    with pytest.raises(InputError, match="batch shape"):
        BatchShape.parse(bad, "profile.held_out")


def test_grid_covers_backend_and_reports_limits(compose_app) -> None:
    cfg = compose_app("vidur_profile", ["backend=hf-continuous", "profile.max_tokens=256"])
    grid = build_grid(cfg.model, cfg.backend, cfg.profile)
    lim = grid.limits
    assert (lim.batch_size, lim.block_size, lim.tokens_per_iteration) == (32, 256, 256)  # cap 32; profile.max_tokens wins
    unset = compose_app("vidur_profile", ["backend=hf-continuous"])  # profile/cpu.yaml leaves max_tokens null
    assert build_grid(unset.model, unset.backend, unset.profile).limits.tokens_per_iteration == 512  # the chunk size
    assert max(grid.token_points) == lim.tokens_per_iteration and max(b for b, _ in grid.decode_points) == lim.batch_size
    assert all(c + k <= lim.request_tokens for c, k in grid.prefill_points)
    assert lim.violations(tokens_per_iteration=lim.tokens_per_iteration, batch_size=lim.batch_size) == []
    msgs = lim.violations(request_tokens=lim.request_tokens + 1, block_size=16)
    assert len(msgs) == 2 and "max_kv_tokens" in msgs[0]
    with pytest.raises(InputError, match="does not cover"):
        lim.require("profiling root x", batch_size=lim.batch_size + 1)
    # profile_meta.json keeps the keys bundles were always written with
    assert GridLimits.from_dict(lim.to_dict(), "meta") == lim and set(lim.to_dict()) == {
        "max_tokens", "max_prefill_chunk", "max_batch_size", "max_kv_tokens", "block_size"}


def test_grid_rejects_context_beyond_model(compose_app) -> None:
    cfg = compose_app("vidur_profile")
    with pytest.raises(InputError, match="max_position_embeddings"):
        build_grid(cfg.model, BackendConfig(name="x", vidur_scheduler="vllm"), ProfileConfig(max_kv_tokens=10**6))


def test_ladder() -> None:
    assert ladder(10) == [1, 2, 3, 4, 6, 8, 10]
    assert ladder(12, start=8) == [8, 12]
    assert ladder(512, start=128, per_octave=4) == [128, 160, 192, 224, 256, 320, 384, 448, 512]


def test_grid_reaches_the_top_of_the_context(compose_app) -> None:
    """Every chunk and every decode batch has a point at the largest KV the context allows (a random forest
    predicts anything beyond the last point at that point)."""
    cfg = compose_app("vidur_profile", ["hardware=h200"])
    grid = build_grid(cfg.model, cfg.backend, cfg.profile)
    top = cfg.profile.max_kv_tokens
    assert {c for c, k in grid.prefill_points if c + k == top} == {c for c, _ in grid.prefill_points}
    assert {b for b, k in grid.decode_points if k == top - 1} == {b for b, _ in grid.decode_points}
    kv = sorted({k for _, k in grid.decode_points})
    assert max(b / a for a, b in zip(kv, kv[1:]) if a >= cfg.profile.min_kv_step) <= 1.125 + 1e-9


def test_profile_follows_hardware(compose_app) -> None:
    assert compose_app("vidur_profile").profile.max_kv_tokens == 512
    assert compose_app("vidur_profile", ["hardware=h100"]).profile.max_kv_tokens == 8192


def test_spec_documents_every_table() -> None:
    spec = (REPO / "specs" / "profiling_root.md").read_text()
    for schema in (MLP_PROFILE, ATTENTION_PROFILE, ITERATION_PROFILE, HELD_OUT_CHECK, MLP_RAW_PROFILE, ATTENTION_RAW_PROFILE):
        assert markdown_table(schema) in spec, schema.name


def test_a_workload_sizes_the_grid_in_powers_of_two(compose_app, tmp_path: Path) -> None:
    """vidur-profile workload_id=<id>: null limits cover the workload, rounded up so that similar workloads (the points
    of a sweep) share one bundle; limits the profile sets are kept, and refused when they do not cover it."""
    from gpu_simulate_test.testing import make_workload
    from gpu_simulate_test.vidur_ext.profiler import sized_for_workload
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    make_workload(tmp_path / "workloads", "a", [(0, 300, 50), (1, 20, 5)])
    make_workload(tmp_path / "workloads", "b", [(0, 400, 60)])
    make_workload(tmp_path / "workloads", "c", [(0, 900, 60)])
    unset = ["profile.max_tokens=null", "profile.max_kv_tokens=null"]
    a, b, c = (sized_for_workload(compose_app("vidur_profile", [*unset, f"workload_id={w}"])) for w in "abc")
    assert (a.profile.max_kv_tokens, a.profile.max_tokens) == (512, None)  # 350 tokens -> 512; hf-generate's budget is the whole prompt
    assert build_grid(a.model, a.backend, a.profile).limits.tokens_per_iteration == 512
    assert bundle_id(a) == bundle_id(b) != bundle_id(c) and c.profile.max_kv_tokens == 1024
    cont = sized_for_workload(compose_app("vidur_profile", [*unset, "backend=hf-continuous", "workload_id=c"]))
    assert (cont.profile.max_kv_tokens, cont.profile.max_tokens) == (1024, None)  # chunks of 512: what null means anyway
    # Without a workload nothing changes (and so no existing bundle id does).
    plain = compose_app("vidur_profile", unset)
    assert sized_for_workload(plain) == plain
    with pytest.raises(InputError, match=r"the grid of profile.max_tokens=null, profile.max_kv_tokens=256, .* does not cover this "
                                         r"workload: prefill chunk tokens: 300 exceeds .*; tokens of one request \(prompt \+ decode\): "
                                         r"350 exceeds the profiled maximum 256"):
        sized_for_workload(compose_app("vidur_profile", ["profile.max_tokens=null", "profile.max_kv_tokens=256", "workload_id=a"]))


def test_a_grid_sized_to_a_small_workload_still_holds_the_profiles_own_shapes(compose_app, tmp_path: Path) -> None:
    """The build predicts its fit and held-out shapes with Vidur, so a grid sized to a small workload still holds those
    the backend schedules (the CPU profile's prefill:192 and decode:1x384; beyond the grid Vidur's lookup fails mid-build
    with a KeyError); shapes the backend skips (over its token budget) do not grow it."""
    from gpu_simulate_test.testing import make_workload
    from gpu_simulate_test.vidur_ext.profiler import sized_for_workload

    make_workload(tmp_path / "workloads", "small", [(0, 20, 4)])
    gen = sized_for_workload(compose_app("vidur_profile", ["profile.max_kv_tokens=null", "workload_id=small"]))
    assert (gen.profile.max_tokens, gen.profile.max_kv_tokens) == (256, 512)  # 192 and 385 tokens, up to powers of two
    limits = build_grid(gen.model, gen.backend, gen.profile).limits
    assert limits.prefill_chunk >= 192 and limits.request_tokens >= 385
    chunked = sized_for_workload(compose_app("vidur_profile", ["profile.max_kv_tokens=null", "workload_id=small",
                                                               "backend=hf-continuous", "backend.max_batch_tokens=64"]))
    assert (chunked.profile.max_tokens, chunked.profile.max_kv_tokens) == (None, 512)  # prefill:192 skipped: the budget, 64
    assert build_grid(chunked.model, chunked.backend, chunked.profile).limits.tokens_per_iteration == 64


def test_the_vllm_policy_skips_shapes_whose_prompt_exceeds_its_budget(compose_app) -> None:
    """Under whole prompts a decode at KV 7168 needs a 7168-token prompt, which a 4096-token budget never schedules: the
    shape is skipped with that reason, and the workload the driver checks before loading holds none of its requests
    (the engine refuses such a prompt when it loads: the H200 vllm build stopped there)."""
    from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer

    cfg = compose_app("vidur_profile", ["backend=native", "backend.vidur_scheduler=vllm", "backend.max_batch_tokens=4096"])
    shapes = [BatchShape.parse(s) for s in ("decode:32x7168", "decode:96x4096", "prefill:512", "prefill:8192")]
    timer = StepTimer(cfg.backend, shapes, 2)
    why = {str(s): timer.unsupported(s) for s in shapes}
    assert why["decode:96x4096"] is None and why["prefill:512"] is None
    assert why["decode:32x7168"] == ("a prompt of 7168 tokens (a decode's prompt is its KV) exceeds the 4096 one "
                                     "iteration may hold (backend.max_batch_tokens), and the vllm policy prefills whole prompts")
    assert why["prefill:8192"].startswith("8192 tokens exceed the 4096")
    prompts = [r.num_prefill_tokens for r in timer.plan().requests]
    assert max(prompts) == 4096 and 512 in prompts
    sarathi = StepTimer(compose_app("vidur_profile", ["backend=native", "backend.max_batch_tokens=512"]).backend,
                        [BatchShape.parse("decode:32x7168")], 2)
    assert sarathi.unsupported(sarathi.shapes[0]) is None  # chunked prompts: any length fits the budget


def test_a_later_chunk_sizes_the_grid_to_its_whole_context(compose_app) -> None:
    """``prefill:64@192`` attends to 256 tokens: a grid sized to a small workload must reach them (Vidur's lookup
    beyond the grid fails mid-build), not only the chunk's 64."""
    from gpu_simulate_test.vidur_ext.profiler.grid import _shape_needs

    cfg = compose_app("vidur_profile", ["backend=native", "backend.max_batch_tokens=64",
                                        "profile.fit=[prefill:64@192,decode:1x32]", "profile.validation=[]",
                                        "profile.test=[mixed:16@96+8x40]"])
    assert _shape_needs(cfg.profile, cfg.backend) == (64, 192 + 64)
