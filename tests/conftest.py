"""Shared fixtures: compose any app's config exactly as its entrypoint would, with outputs under ``tmp_path``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test import config


@pytest.fixture
def compose_app(tmp_path: Path) -> Callable[..., Any]:
    """``compose_app("real_bench", ["backend=hf-continuous"])``: the app's typed config, as every stage receives it."""

    def _compose(app: str, overrides: list[str] | None = None) -> Any:
        return config.compose_app(app, [f"paths.root={tmp_path}", *(overrides or [])])

    return _compose
