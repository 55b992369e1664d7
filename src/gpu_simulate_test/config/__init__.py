"""Structured configs: one dataclass per Hydra group and per app, registered so that a typo fails in Hydra itself.

Where the config tree is (:data:`CONFIG_DIR`), how the apps' schemas are registered, and the one conversion of a
composed config into its app's dataclass (:func:`typed`) live here; :func:`compose_app` does all three for code that
composes a config without an entrypoint (the demo, scripts and tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from gpu_simulate_test.config import hf_model

from gpu_simulate_test.config.apps import (
    CompareRunsAppConfig,
    RealBenchAppConfig,
    VidurProfileAppConfig,
    VidurSimAppConfig,
    WorkloadSpecAppConfig,
)
from gpu_simulate_test.config.experiment import ExperimentAppConfig
from gpu_simulate_test.errors import GstError, InputError

APP_SCHEMAS = {
    "workload_spec": WorkloadSpecAppConfig,
    "real_bench": RealBenchAppConfig,
    "vidur_profile": VidurProfileAppConfig,
    "vidur_sim": VidurSimAppConfig,
    "compare_runs": CompareRunsAppConfig,
    "experiment": ExperimentAppConfig,
}


def config_dir() -> str:
    """The packaged config tree in an installed wheel; the repository's ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "configs"
    if packaged.is_dir():
        return str(packaged)
    repo = here.parent.parent / "configs"
    if repo.is_dir():
        return str(repo)
    raise RuntimeError(f"gpu-simulate-test: no config tree at {packaged} or {repo}")


CONFIG_DIR = config_dir()
SHIPPED_RESOLVER = "shipped"  # ${shipped:traces/<file>}: a data file shipped in the config tree (configs/traces/)


def shipped_file(relative: str) -> str:
    """The absolute path of a file the config tree ships (a trace fixture), wherever the tree is installed."""
    path = Path(CONFIG_DIR) / relative
    if not path.is_file():
        raise InputError(f"${{{SHIPPED_RESOLVER}:{relative}}}: no such file in the config tree {CONFIG_DIR}")
    return str(path)


def register_configs() -> None:
    """Store each app's schema as ``<app>_schema`` (its YAML lists it first in ``defaults``) and the ``hf``
    resolver that ``configs/model/hf.yaml`` reads a Hugging Face config.json with, and the ``shipped`` resolver of
    the trace files the tree carries."""
    cs = ConfigStore.instance()
    for app, node in APP_SCHEMAS.items():
        cs.store(name=f"{app}_schema", node=node)
    OmegaConf.register_new_resolver(hf_model.RESOLVER, hf_model.resolve, replace=True)
    OmegaConf.register_new_resolver(SHIPPED_RESOLVER, shipped_file, replace=True)


def _user_error(exc: BaseException) -> Optional[GstError]:
    """The :class:`GstError` a resolver raised, which OmegaConf wraps (twice) in its own errors."""
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, GstError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _missing(node: Any, where: str = "") -> list[str]:
    """Keys left ``???``, found without resolving interpolations (a resolver may need one of them)."""
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in _missing(v, f"{where}.{key}" if where else str(key))]
    if isinstance(node, list):
        return [k for i, v in enumerate(node) for k in _missing(v, f"{where}[{i}]")]
    return [where] if node == "???" else []


def typed(cfg: DictConfig) -> Any:
    """The app's dataclass (e.g. :class:`RealBenchAppConfig`) from its composed config; a value left ``???`` is
    one clear error naming it, and so is a value a resolver could not give."""
    missing = sorted(_missing(OmegaConf.to_container(cfg, resolve=False)))
    if missing:
        raise InputError(f"config value(s) {missing} must be given, e.g. {missing[0]}=<value> on the command line")
    try:
        return OmegaConf.to_object(cfg)
    except InterpolationResolutionError as exc:
        error = _user_error(exc)
        if error is None:
            raise
        raise error from None


def compose_app(app: str, overrides: Sequence[str] = ()) -> Any:
    """``configs/<app>.yaml`` with ``overrides`` composed as the app's entrypoint would, typed."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return typed(compose(config_name=app, overrides=list(overrides)))
