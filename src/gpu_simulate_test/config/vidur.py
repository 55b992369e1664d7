"""The ``vidur`` group: how the simulator is driven (predictor, its model grid, limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class RandomForrestGridConfig:
    """Hyper-parameter grid of Vidur's random-forest predictor (Vidur's own 27-point grid takes minutes)."""

    num_estimators: List[int] = field(default_factory=lambda: [100])
    max_depth: List[int] = field(default_factory=lambda: [32])
    min_samples_split: List[int] = field(default_factory=lambda: [2])


@dataclass
class LinearRegressionGridConfig:
    """Hyper-parameter grid of Vidur's polynomial linear-regression predictor."""

    polynomial_degree: List[int] = field(default_factory=lambda: [1, 2, 3])
    polynomial_include_bias: List[bool] = field(default_factory=lambda: [True])
    polynomial_interaction_only: List[bool] = field(default_factory=lambda: [False])
    fit_intercept: List[bool] = field(default_factory=lambda: [True])


@dataclass
class VidurConfig:
    """Settings of the Vidur run that are not dictated by model, hardware or backend."""

    execution_time_predictor: str = "random_forrest"  # Vidur's own spelling: random_forrest | linear_regression
    # Cap of the predictor's pre-computed grid (tokens per request and per iteration); null: the workload's
    # longest request (or largest iteration), rounded up to a power of two so that similar workloads share a cache.
    prediction_max_tokens_per_request: Optional[int] = None
    num_replicas: int = 1
    # narrow: the hyper-parameter grid below (random_forrest / linear_regression) and k_fold_cv_splits; stock: Vidur's
    # own defaults (random forest: 27 points, 10 folds; specs/vidur_sim.md has what narrowing costs in accuracy).
    predictor_grid: str = "narrow"
    k_fold_cv_splits: int = 3
    num_training_job_threads: int = 1  # sklearn n_jobs for the grid search; -1: every core
    # Vidur adds this fraction to batched decode attention of GQA models (its default, kept for fidelity).
    attention_decode_batching_overhead_fraction: float = 0.1
    random_forrest: RandomForrestGridConfig = field(default_factory=RandomForrestGridConfig)
    linear_regression: LinearRegressionGridConfig = field(default_factory=LinearRegressionGridConfig)
    log_level: str = "warning"  # level of Vidur's own logger
