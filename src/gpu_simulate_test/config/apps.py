"""Top-level configs of the Hydra apps. Each app's YAML in ``configs/`` composes onto one of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.compare import CompareConfig
from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.paths import PathsConfig
from gpu_simulate_test.config.profile import ProfileConfig
from gpu_simulate_test.config.vidur import VidurConfig
from gpu_simulate_test.config.workload import WorkloadConfig


@dataclass
class WorkloadSpecAppConfig:
    seed: int = 0
    workload: WorkloadConfig = MISSING
    model: ModelConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    overwrite: bool = False


@dataclass
class RealBenchAppConfig:
    seed: int = 0
    workload_id: str = MISSING
    model: ModelConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    run_id: Optional[str] = None  # null: a new id
    overwrite: bool = False


@dataclass
class VidurProfileAppConfig:
    seed: int = 0
    model: ModelConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    overwrite: bool = False


@dataclass
class VidurSimAppConfig:
    seed: int = 0
    workload_id: str = MISSING
    profiling_root: str = MISSING  # a directory, or a bundle id under paths.profiling
    model: ModelConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING
    vidur: VidurConfig = field(default_factory=VidurConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run_id: Optional[str] = None
    overwrite: bool = False


@dataclass
class CompareRunsAppConfig:
    seed: int = 0
    real_run: str = MISSING  # run id under paths.real_runs, or a directory
    sim_run: str = MISSING  # run id under paths.vidur_runs, or a directory
    compare: CompareConfig = field(default_factory=CompareConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    allow_incomplete: bool = False
    comparison_id: Optional[str] = None
    overwrite: bool = False
