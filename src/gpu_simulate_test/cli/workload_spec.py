"""``workload-spec``: write a deterministic, content-addressed workload under ``paths.workloads`` (``mode=generate``,
the default), or write an existing one in another tool's format (``mode=export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.config.apps import WorkloadSpecAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.workloads.export import export_workload
from gpu_simulate_test.workloads.spec import generate_workload

MODES: dict[str, tuple[Callable[[WorkloadSpecAppConfig], Path], Callable[[Path], str]]] = {
    "generate": (generate_workload, lambda path: f"workload_id={path.name}\npath={path}"),
    "export": (export_workload, lambda path: f"exported: {path}"),
}


def run_mode(app: WorkloadSpecAppConfig) -> str:
    """Run the mode ``app.mode`` names; returns what the CLI prints."""
    if app.mode not in MODES:
        raise InputError(f"mode={app.mode!r} is not one of {sorted(MODES)}")
    run, report = MODES[app.mode]
    return report(run(app))


main = hydra_app("workload_spec", run_mode, str)

if __name__ == "__main__":
    main()
