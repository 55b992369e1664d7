"""Structured configs: one dataclass per Hydra group, registered so that a typo fails in Hydra itself."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from gpu_simulate_test.config.experiment import ExperimentAppConfig
from gpu_simulate_test.config.apps import (
    CompareRunsAppConfig,
    RealBenchAppConfig,
    VidurProfileAppConfig,
    VidurSimAppConfig,
    WorkloadSpecAppConfig,
)

APP_SCHEMAS = {
    "workload_spec": WorkloadSpecAppConfig,
    "real_bench": RealBenchAppConfig,
    "vidur_profile": VidurProfileAppConfig,
    "vidur_sim": VidurSimAppConfig,
    "compare_runs": CompareRunsAppConfig,
    "experiment": ExperimentAppConfig,
}


def register_configs() -> None:
    """Store each app's schema as ``<app>_schema``; its YAML lists it first in ``defaults``."""
    cs = ConfigStore.instance()
    for app, node in APP_SCHEMAS.items():
        cs.store(name=f"{app}_schema", node=node)
