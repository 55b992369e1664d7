"""What every Hydra entrypoint shares: where the config tree is, and how user errors end the process."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, TypeVar

from omegaconf import DictConfig

from gpu_simulate_test.config import register_configs
from gpu_simulate_test.errors import GstError

T = TypeVar("T")
log = logging.getLogger("gpu_simulate_test")


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
register_configs()


def run_app(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Call ``fn``; a :class:`GstError` becomes one line on stderr and its exit code (no traceback)."""
    try:
        return fn(cfg)
    except GstError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
