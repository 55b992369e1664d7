"""vidur_ext's run-time extensions of Vidur: registration (head_dim, re-registration, devices) and the predictor API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from vidur.config import BaseDeviceSKUConfig, BaseModelConfig, RandomForrestExecutionTimePredictorConfig

from gpu_simulate_test.config.vidur import RandomForrestGridConfig, VidurConfig
from gpu_simulate_test.testing import constant_profile
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.predictor import PredictorGrid, build_predictor, predict_batch_time_s, predictor_config
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.vidur_ext.registration import build_replica_config, register_hardware, register_model


def test_qwen3_head_dim_and_reregistration(compose_app) -> None:
    cfg = compose_app("vidur_sim", ["model=qwen3-0.6b", "hardware=h200", "workload_id=w", "profiling_root=b"])
    replica = build_replica_config(cfg.model, cfg.hardware)
    assert replica.attention_head_dim == 128  # Vidur alone derives 1024 / 16 = 64
    assert replica.device_config.total_memory_gb == 141 and replica.node_config.num_devices_per_node == 1
    changed = replace(cfg.model, num_layers=3)
    name = register_model(changed)
    assert BaseModelConfig.create_from_name(name).num_layers == 3  # the later definition wins
    register_model(cfg.model)
    assert BaseModelConfig.create_from_name(name).num_layers == 28
    h100 = compose_app("vidur_sim", ["hardware=h100", "workload_id=w", "profiling_root=b"]).hardware
    assert register_hardware(h100) == ("h100", "h100_pairwise_nvlink")
    assert type(BaseDeviceSKUConfig.create_from_type_string("h100")).__module__.startswith("vidur.")


def test_predict_batch_time_of_constant_profile(compose_app, tmp_path: Path) -> None:
    cfg = compose_app("vidur_sim", ["backend=hf-continuous", "workload_id=w", "profiling_root=b"])
    limits = GridLimits(tokens_per_iteration=512, prefill_chunk=512, batch_size=32, request_tokens=2048, block_size=256)
    bundle = constant_profile(tmp_path / "p", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                              limits=limits, op=0.1, prefill=2.0, decode=0.5)
    vidur = VidurConfig(random_forrest=RandomForrestGridConfig(num_estimators=[8]), k_fold_cv_splits=2)
    predictor = build_predictor(bundle / "mlp.csv", bundle / "attention.csv", model=cfg.model, hardware=cfg.hardware,
                                block_size=256, grid=PredictorGrid(2048, 512, 32), cache_root=tmp_path / "cache", vidur=vidur)
    assert abs(predict_batch_time_s(predictor, [(100, 100)], serial=False) - 2 * (0.9 + 2.0) * 1e-3) < 1e-12
    assert abs(predict_batch_time_s(predictor, [(1, 700), (1, 300)], serial=False) - 2 * (0.9 + 0.55) * 1e-3) < 1e-12
    assert abs(predict_batch_time_s(predictor, [(64, 564), (1, 30)], serial=False) - 2 * (0.9 + 2.0 + 0.5) * 1e-3) < 1e-12
    assert any((tmp_path / "cache" / "vidur_predictor").iterdir())


def _cache_dir(compose_app, tmp_path: Path, *overrides: str) -> tuple[Path, object]:
    cfg = compose_app("vidur_sim", ["workload_id=w", "profiling_root=b", *overrides])
    bundle = tmp_path / "p" / "b"
    if not bundle.exists():
        limits = GridLimits(tokens_per_iteration=64, prefill_chunk=64, batch_size=1, request_tokens=512, block_size=256)
        constant_profile(tmp_path / "p", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend, limits=limits,
                         op=0.1, prefill=2.0, decode=0.5)
    pc = predictor_config(bundle / "mlp.csv", bundle / "attention.csv", model=cfg.model, grid=PredictorGrid(512, 64, 1),
                          cache_root=tmp_path / "cache", vidur=cfg.vidur, seed=cfg.seed)
    return Path(pc.cache_dir), pc


def test_every_predictor_setting_enters_the_cache_key(compose_app, tmp_path: Path) -> None:
    """A warm cache is reused only by the settings that trained it (it used to ignore everything but k_fold_cv_splits)."""
    base, _ = _cache_dir(compose_app, tmp_path)
    changed = ["vidur.random_forrest.num_estimators=[50]", "vidur.random_forrest.max_depth=[8]",
               "vidur.random_forrest.min_samples_split=[5]", "vidur.k_fold_cv_splits=5", "seed=1",
               "vidur.attention_decode_batching_overhead_fraction=0.2", "vidur.predictor_grid=stock",
               "vidur.execution_time_predictor=linear_regression"]
    dirs = {o: _cache_dir(compose_app, tmp_path, o)[0] for o in changed}
    assert base not in dirs.values() and len(set(dirs.values())) == len(changed)
    # Training threads change how fast the same model is found, not which: the cache is shared.
    assert _cache_dir(compose_app, tmp_path, "vidur.num_training_job_threads=2")[0] == base


def test_stock_predictor_grid_is_vidurs_own(compose_app, tmp_path: Path) -> None:
    _, narrow = _cache_dir(compose_app, tmp_path)
    assert (narrow.num_estimators, narrow.max_depth, narrow.min_samples_split, narrow.k_fold_cv_splits) == ([100], [32], [2], 3)
    _, stock = _cache_dir(compose_app, tmp_path, "vidur.predictor_grid=stock", "vidur.random_forrest.num_estimators=[7]")
    vidurs = RandomForrestExecutionTimePredictorConfig()
    assert (stock.num_estimators, stock.max_depth, stock.min_samples_split) == (vidurs.num_estimators, vidurs.max_depth,
                                                                               vidurs.min_samples_split) == (
        [250, 500, 750], [8, 16, 32], [2, 5, 10])
    assert stock.k_fold_cv_splits == vidurs.k_fold_cv_splits == 10
    with pytest.raises(InputError, match=r"vidur.predictor_grid='wide' is not one of \['narrow', 'stock'\]"):
        _cache_dir(compose_app, tmp_path, "vidur.predictor_grid=wide")
