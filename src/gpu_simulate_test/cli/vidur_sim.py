"""``vidur-sim``: simulate a workload in Vidur with a profiling bundle; writes tmp/vidur_runs/<run_id>/."""

from __future__ import annotations

from pathlib import Path

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.config.apps import VidurSimAppConfig


def _run(app: VidurSimAppConfig) -> Path:
    from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim  # Vidur takes seconds to import

    return run_vidur_sim(app)


main = hydra_app("vidur_sim", _run, str)

if __name__ == "__main__":
    main()
