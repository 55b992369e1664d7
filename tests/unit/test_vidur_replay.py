"""Every real step predicted from its own batch (vidur_ext/replay.py): the shapes read from the run's fields, the
predictor the bundle gives vidur-sim, each distinct batch predicted once."""

from __future__ import annotations

import pandas as pd
import pytest

from gpu_simulate_test.config.vidur import LinearRegressionGridConfig, VidurConfig
from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.testing import make_profile
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits, load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps, step_shapes


def test_step_shapes_from_the_run_fields() -> None:
    assert step_shapes("r3:1;r7:480", "1025;960") == ((1, 1025), (480, 960))
    for requests, kv in (("r1:1;r2:1", "5"), ("r1:64", "32"), ("r1:0", "0")):
        with pytest.raises(ArtifactError, match="iteration_metrics.csv"):
            step_shapes(requests, kv)


def test_replay_predicts_each_real_step_as_the_bundle_does(compose_app, tmp_path) -> None:
    cfg = compose_app("vidur_sim", ["backend=native", "workload_id=w", "profiling_root=b"])
    limits = GridLimits(tokens_per_iteration=512, prefill_chunk=512, batch_size=32, request_tokens=1024, block_size=16)
    make_profile(tmp_path / "p", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend, limits=limits,
                 op_ms=lambda n: 0.2 + 0.002 * n, prefill_ms=lambda c, k: 0.5 + 0.004 * c + 0.001 * k,
                 decode_ms=lambda b, k: 0.3 + 0.05 * b + 0.0005 * k)
    root = load_profiling_root(tmp_path / "p" / "b")
    vidur = VidurConfig(execution_time_predictor="linear_regression", k_fold_cv_splits=2,
                        linear_regression=LinearRegressionGridConfig(polynomial_degree=[1]))
    steps = pd.DataFrame({"iteration_id": [0, 1, 2, 3], "start_time_ns": [0, 10_000_000, 20_000_000, 30_000_000],
                          "end_time_ns": [10_000_000, 20_000_000, 30_000_000, 40_000_000],
                          "requests": ["r0:300", "r0:1;r1:200", "r0:1;r1:1", "r0:1;r1:1"],
                          "kv_tokens": ["300", "301;200", "302;201", "302;201"]})
    with pytest.raises(ValueError, match="dispatch times"):  # how each step was packed: from the run, or given
        replay_steps(root, steps, model=cfg.model, hardware=cfg.hardware, vidur=vidur, seed=0, cache_root=tmp_path / "c")
    got = replay_steps(root, steps, model=cfg.model, hardware=cfg.hardware, vidur=vidur, seed=0, cache_root=tmp_path / "c",
                       dispatched={0: 0, 1: 5_000_000})  # r1 handed over during the first step
    assert got["packed_at_start"].tolist() == [True, True, False, False]
    predictor = build_predictor(root.mlp_csv, root.attention_csv, model=cfg.model, hardware=cfg.hardware, block_size=16,
                                grid=grid_for(root.limits, vidur), cache_root=tmp_path / "c", vidur=vidur, seed=0)
    want = [round(predict_batch_time_s(predictor, list(step_shapes(r, k)), serial=a) * 1e9)
            for r, k, a in zip(steps["requests"], steps["kv_tokens"], got["packed_at_start"])]
    assert got["predicted_ns"].tolist() == want and got["measured_ns"].tolist() == [10_000_000] * 4
    assert got["batch_size"].tolist() == [1, 2, 2, 2] and got["prompt_tokens"].tolist() == [300, 200, 0, 0]
    assert got["error_pct"].tolist() == pytest.approx([100.0 * (w - 1e7) / 1e7 for w in want])
