"""The one factory of the Hydra entrypoints: compose, type the config once, run the app, print its report."""

from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn, TypeVar

import hydra
from omegaconf import DictConfig

from gpu_simulate_test.config import CONFIG_DIR, register_configs, typed
from gpu_simulate_test.errors import GstError, RunInterrupted

T = TypeVar("T")
INTERRUPTED = "interrupted (Ctrl-C); finished outputs are kept, the one in progress was not written"


def fail(exc: GstError) -> NoReturn:
    """One line on stderr and the error's exit code: how every CLI ends on an error meant for the user."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(exc.exit_code)


def hydra_app(config_name: str, run: Callable[[Any], T], report: Callable[[T], str]) -> Callable[[], None]:
    """The ``main`` of the app whose config is ``configs/<config_name>.yaml``.

    ``run`` receives the app's dataclass; what it returns goes through ``report`` to stdout. A :class:`GstError`
    becomes one line on stderr and its exit code (no traceback): library code raises, only this exits. Ctrl-C
    anywhere (composing, importing, running) ends the same way with exit code 130; a stage that keeps what it measured
    (real-bench) says so in its own :class:`RunInterrupted`.
    """
    register_configs()

    def main(cfg: DictConfig) -> None:
        try:
            result = run(typed(cfg))
        except GstError as exc:
            fail(exc)
        print(report(result), flush=True)

    # Hydra names the job (and so its output folder, <paths.root>/hydra/<job>/) after the task function's module.
    main.__module__ = f"gpu_simulate_test.cli.{config_name}"
    app = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(main)

    def entry() -> None:
        try:
            app()
        except KeyboardInterrupt:
            fail(RunInterrupted(INTERRUPTED))

    return entry
