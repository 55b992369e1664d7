"""Every app's config composes; typos fail in Hydra itself; hardware and launchers are config choices."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from gpu_simulate_test.cli._app import CONFIG_DIR
from gpu_simulate_test.config import APP_SCHEMAS

GROUP_OPTIONS = {
    "model": ["qwen3-0.6b", "qwen3-tiny"],
    "hardware": ["h100", "a100", "h200", "cpu"],
    "backend": ["hf-generate", "hf-continuous", "sarathi"],
}


@pytest.mark.parametrize("app", sorted(APP_SCHEMAS))
def test_each_app_composes_with_a_top_level_seed(app: str, compose_app: Callable[..., DictConfig]) -> None:
    cfg = compose_app(app)
    assert "seed" in cfg and isinstance(cfg.seed, int)
    assert Path(cfg.paths.root).is_absolute()  # the fixture's tmp root reached the paths group


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes(group: str, option: str, compose_app: Callable[..., DictConfig]) -> None:
    cfg = compose_app("experiment", [f"{group}={option}"])
    assert cfg[group].name == option


def test_qwen3_06b_architecture(compose_app: Callable[..., DictConfig]) -> None:
    m = compose_app("experiment", ["model=qwen3-0.6b"]).model
    assert (m.hidden_size, m.num_layers, m.num_attention_heads, m.num_kv_heads, m.head_dim) == (1024, 28, 16, 8, 128)
    assert (m.intermediate_size, m.vocab_size, m.max_position_embeddings) == (3072, 151936, 40960)
    assert m.rope_theta == 1e6 and m.tie_word_embeddings and m.rms_norm_eps == 1e-6 and m.dtype == "bfloat16"


@pytest.mark.parametrize(
    "override",
    ["model.hiden_size=3", "hardware=h300", "backend.max_requests_per_batch=many", "sed=1"],
)
def test_typos_fail_in_hydra(override: str, compose_app: Callable[..., DictConfig]) -> None:
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
