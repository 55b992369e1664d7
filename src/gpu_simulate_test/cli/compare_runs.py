"""``compare-runs``: compare a real and a simulated run, summarise a load sweep, or import a vLLM result.

    compare-runs real_run=<id|dir> sim_run=<id|dir>                 # mode=compare (default)
    compare-runs mode=sweep comparisons='[cmp-a,cmp-b]'             # ids, dirs or globs ('cmp-*')
    compare-runs mode=import_vllm vllm_json=<file> workload_id=<id> # -> a real run
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hydra
from omegaconf import DictConfig

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.analysis.sweep import run_sweep
from gpu_simulate_test.analysis.vllm_import import import_vllm_run
from gpu_simulate_test.cli._app import CONFIG_DIR, run_app
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.outputs import SUMMARY


@dataclass(frozen=True)
class Mode:
    run: Callable[[DictConfig], Path]
    report: Callable[[Path], str]


MODES: dict[str, Mode] = {
    "compare": Mode(compare_runs, lambda p: f"{headline_text(p)}\n\nsummary: {p / SUMMARY}"),
    "sweep": Mode(run_sweep, lambda p: f"sweep summary: {p / SUMMARY}"),
    "import_vllm": Mode(import_vllm_run, lambda p: f"imported real run: {p} (compare it with real_run={p.name})"),
}


def run_mode(cfg: DictConfig) -> str:
    """Run the mode ``cfg.mode`` names; returns what the CLI prints."""
    mode = MODES.get(str(cfg.mode))
    if mode is None:
        raise InputError(f"mode={cfg.mode!r} is not one of {sorted(MODES)}")
    return mode.report(mode.run(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="compare_runs")
def main(cfg: DictConfig) -> None:
    print(run_app(run_mode, cfg))


if __name__ == "__main__":
    main()
