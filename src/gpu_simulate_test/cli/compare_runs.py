"""``compare-runs``: compare a real and a simulated run, summarise a load sweep, or import a benchmark tool's result.

    compare-runs real_run=<id|dir> sim_run=<id|dir>                 # mode=compare (default)
    compare-runs mode=sweep comparisons='[cmp-a,cmp-b]'             # ids, dirs or globs ('cmp-*')
    compare-runs mode=import import_format=<vllm|inference_perf|aiperf|requests_csv> import_file=<file> workload_id=<id>
                                                                    # -> a real run
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.analysis.sweep import run_sweep
from gpu_simulate_test.analysis.run_import import import_report, import_run
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
    "import": Mode(import_run, import_report),
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
