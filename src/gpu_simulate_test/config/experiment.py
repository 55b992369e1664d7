"""The ``experiment`` app: the five stages for one config, resumable, and sweeps over load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from gpu_simulate_test.config.apps import MeasureAppConfig
from gpu_simulate_test.config.compare import CompareConfig
from gpu_simulate_test.config.profile import ProfileConfig
from gpu_simulate_test.config.vidur import VidurConfig
from gpu_simulate_test.config.workload import WorkloadConfig

STAGES = ("workload", "real", "profile", "sim", "compare")


@dataclass
class LoadConfig:
    """Offered load of this point: an absolute ``qps``, or a fraction of the backend's measured capacity.

    Both null: the workload's own arrival settings are kept. ``max_arrival_span_s`` sizes a point to a time budget
    (fewer requests at low rates, for engines too slow to serve the workload's full count at every load):
    num_requests = min(workload.num_requests, ceil(rate x span)).
    """

    qps: Optional[float] = None
    capacity_fraction: Optional[float] = None
    max_arrival_span_s: Optional[float] = None


@dataclass
class CapacityConfig:
    """The capacity probe: ``num_requests`` of the workload's lengths, all at once; capacity = requests / makespan."""

    num_requests: int = 32


@dataclass
class ExperimentAppConfig(MeasureAppConfig):
    """``overwrite=true`` runs every stage of the point again and lets each replace what it finds (the measured
    capacity, shared by the points of a sweep, is kept); ``redo=[sim,compare]`` does so for the named stages only."""

    workload: WorkloadConfig = MISSING
    vidur: VidurConfig = field(default_factory=VidurConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    # Which stages this invocation may run; a point's finished stages are reused while what they were made from is
    # unchanged (by content), else made again.
    stages: List[str] = field(default_factory=lambda: list(STAGES))
    redo: List[str] = field(default_factory=list)  # stages to run again even if their output is current
    # Simulate with a bundle whose verdict is not ``pass`` (fail, busy, unverified: specs/profiling_root.md).
    accept_bundle: bool = False
    # Archive this point's run directories into <dir>/<point_key>.tar.gz (for bringing runs back from a GPU machine).
    archive_dir: Optional[str] = None
