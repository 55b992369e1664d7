"""Shared fixtures: compose any app's config exactly as its entrypoint would."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from gpu_simulate_test.cli._app import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def compose_app(tmp_path: Path) -> Callable[..., DictConfig]:
    """``compose_app("real_bench", ["backend=hf-continuous"])``; outputs go under ``tmp_path``."""

    def _compose(app: str, overrides: list[str] | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=app, overrides=[f"paths.root={tmp_path}", *(overrides or [])])

    return _compose
