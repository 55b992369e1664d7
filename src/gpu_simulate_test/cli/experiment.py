"""``experiment``: the whole pipeline for one config; ``-m`` sweeps and ends with a sweep report."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.config.experiment import ExperimentAppConfig
from gpu_simulate_test.errors import OutputExistsError
from gpu_simulate_test.experiment import PointRecord, run_experiment

log = logging.getLogger(__name__)
_POINTS_FILE = "experiment_points.jsonl"


def _run(app: ExperimentAppConfig) -> PointRecord:
    rec = run_experiment(app)
    try:  # inside a multirun, remember the point for the sweep report
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if hc.mode.name == "MULTIRUN":
            with open(Path(hc.sweep.dir) / _POINTS_FILE, "a") as fh:
                fh.write(json.dumps(asdict(rec)) + "\n")
    except ValueError:
        pass
    return rec


class SweepReport(Callback):
    """After a multirun, hand every point's comparison to the sweep report (latency and error vs load)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        points_file = Path(config.hydra.sweep.dir) / _POINTS_FILE
        if not points_file.is_file():
            return
        points = [json.loads(line) for line in points_file.read_text().splitlines() if line.strip()]
        comparisons = [p["comparison_id"] for p in points if p.get("comparison_id")]
        if len(comparisons) < 2:
            log.info("sweep report skipped: %d comparison(s)", len(comparisons))
            return
        from gpu_simulate_test.analysis.sweep import run_sweep

        sweep = CompareRunsAppConfig(mode="sweep", comparisons=comparisons, paths=OmegaConf.to_object(config.paths),
                                     compare=OmegaConf.to_object(config.compare), overwrite=bool(config.overwrite))
        try:
            print(f"sweep report: {run_sweep(sweep)}")
        except OutputExistsError as exc:  # the same comparisons were reported before: the report stands
            print(f"sweep report exists already: {exc}")


main = hydra_app("experiment", _run, lambda rec: json.dumps(asdict(rec), indent=2))

if __name__ == "__main__":
    main()
