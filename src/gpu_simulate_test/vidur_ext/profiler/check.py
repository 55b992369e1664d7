"""Vidur's own predictor applied to a (possibly half-written) bundle, for the fit, the validation and the test checks:
it reads the bundle as vidur-sim does (its rows, and the step terms and row keys its meta carries, if any), each shape
packed as the profiler's steps of it were (``variants.packed_at_start``)."""

from __future__ import annotations

from pathlib import Path

from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import PROFILE_META
from gpu_simulate_test.vidur_ext import profiling_root as pr
from gpu_simulate_test.vidur_ext.profiler.bundle import Predict
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import packed_at_start
from gpu_simulate_test.vidur_ext.step_correction import StepTerms, step_terms


def vidur_predict(cfg: VidurProfileAppConfig) -> Predict:
    """Predicted iteration ms of each shape, from Vidur's predictor classes trained on ``root``'s CSVs
    (through vidur_ext.predictor: its roundings, the GQA decode overhead and the KV-after-chunk lookup count)."""
    from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s

    limits = build_grid(cfg.model, cfg.backend, cfg.profile).limits

    def predict(root: Path, shapes: list[BatchShape]) -> list[float]:
        meta = root / PROFILE_META
        predictor = build_predictor(
            root / pr.MLP_FILE, root / pr.ATTENTION_FILE, model=cfg.model, hardware=cfg.hardware,
            block_size=limits.block_size, grid=grid_for(limits), cache_root=Path(cfg.paths.cache), seed=cfg.seed,
            step_terms=step_terms(read_meta(meta), str(meta)) if meta.is_file() else StepTerms(),
        )
        return [predict_batch_time_s(predictor, list(zip(*s.vidur_batch())), serial=packed_at_start(s)) * 1e3
                for s in shapes]

    return predict
