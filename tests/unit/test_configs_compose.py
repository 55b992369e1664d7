"""Every app's config composes into its dataclass; typos fail in Hydra itself; hardware and launchers are config choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from gpu_simulate_test.config import APP_SCHEMAS, CONFIG_DIR
from gpu_simulate_test.config.apps import AppConfig, EngineAppConfig
from gpu_simulate_test.errors import InputError

GROUP_OPTIONS = {
    "model": ["qwen3-0.6b", "qwen3-tiny", "llama-2-7b", "llama-3-8b", "mistral-7b"],
    "hardware": ["h100", "a100", "h200", "cpu"],
    "backend": ["hf-generate", "hf-continuous", "sarathi", "native"],
}


REQUIRED = {"real_bench": ["workload_id=w"], "vidur_sim": ["workload_id=w", "profiling_root=b"]}
ENGINE_APPS = {"real_bench", "vidur_profile", "vidur_sim", "experiment"}


@pytest.mark.parametrize("app", sorted(APP_SCHEMAS))
def test_each_app_composes_into_its_dataclass(app: str, compose_app: Callable[..., Any]) -> None:
    cfg = compose_app(app, [*REQUIRED.get(app, []), "overwrite=true"])  # every app takes overwrite, experiment too
    assert type(cfg) is APP_SCHEMAS[app] and isinstance(cfg, AppConfig)
    assert isinstance(cfg.seed, int) and cfg.overwrite is True
    assert Path(cfg.paths.root).is_absolute()  # the fixture's tmp root reached the paths group
    assert isinstance(cfg, EngineAppConfig) == (app in ENGINE_APPS)


@pytest.mark.parametrize("app", sorted(REQUIRED))
def test_a_value_left_unset_is_one_clear_error(app: str, compose_app: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match=r"'workload_id'\].*must be given"):
        compose_app(app)


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes(group: str, option: str, compose_app: Callable[..., Any]) -> None:
    cfg = compose_app("experiment", [f"{group}={option}"])
    assert getattr(cfg, group).name == option


def test_qwen3_06b_architecture(compose_app: Callable[..., Any]) -> None:
    m = compose_app("experiment", ["model=qwen3-0.6b"]).model
    assert (m.hidden_size, m.num_layers, m.num_attention_heads, m.num_kv_heads, m.head_dim) == (1024, 28, 16, 8, 128)
    assert (m.intermediate_size, m.vocab_size, m.max_position_embeddings) == (3072, 151936, 40960)
    assert m.rope_theta == 1e6 and m.tie_word_embeddings and m.rms_norm_eps == 1e-6 and m.dtype == "bfloat16"


@pytest.mark.parametrize(
    "override",
    ["model.hiden_size=3", "hardware=h300", "backend.max_requests_per_batch=many", "sed=1"],
)
def test_typos_fail_in_hydra(override: str, compose_app: Callable[..., Any]) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_app("experiment", [override])


@pytest.mark.parametrize("launcher, target", [("joblib", "JoblibLauncher"), ("submitit_slurm", "SlurmLauncher")])
def test_launchers_are_config_options(launcher: str, target: str, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="experiment",
            overrides=[f"paths.root={tmp_path}", f"hydra/launcher={launcher}"],
            return_hydra_config=True,
        )
    assert target in cfg.hydra.launcher._target_
