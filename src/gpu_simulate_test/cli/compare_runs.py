"""``compare-runs``: compare a real and a simulated run, summarise a load sweep, or import a vLLM result.

    compare-runs real_run=<id|dir> sim_run=<id|dir>                 # mode=compare (default)
    compare-runs mode=sweep comparisons='[cmp-a,cmp-b]'             # ids, dirs or globs ('cmp-*')
    compare-runs mode=import_vllm vllm_json=<file> workload_id=<id> # -> a real run
    compare-runs mode=import_requests requests_csv=<file> workload_id=<id>  # -> a real run without token times
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.analysis.request_import import import_request_results
from gpu_simulate_test.analysis.sweep import run_sweep
from gpu_simulate_test.analysis.vllm_import import import_vllm_run
from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.outputs import SUMMARY


@dataclass(frozen=True)
class Mode:
    run: Callable[[CompareRunsAppConfig], Path]
    report: Callable[[Path], str]


MODES: dict[str, Mode] = {
    "compare": Mode(compare_runs, lambda p: f"{headline_text(p)}\n\nsummary: {p / SUMMARY}"),
    "sweep": Mode(run_sweep, lambda p: f"sweep summary: {p / SUMMARY}"),
    "import_vllm": Mode(import_vllm_run, lambda p: f"imported real run: {p} (compare it with real_run={p.name})"),
    "import_requests": Mode(import_request_results, lambda p: (
        f"imported real run (per request, no token times): {p} (compare it with real_run={p.name})")),
}


def run_mode(app: CompareRunsAppConfig) -> str:
    """Run the mode ``app.mode`` names; returns what the CLI prints."""
    mode = MODES.get(app.mode)
    if mode is None:
        raise InputError(f"mode={app.mode!r} is not one of {sorted(MODES)}")
    return mode.report(mode.run(app))


main = hydra_app("compare_runs", run_mode, str)

if __name__ == "__main__":
    main()
