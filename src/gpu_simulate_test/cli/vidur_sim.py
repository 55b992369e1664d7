"""``vidur-sim``: simulate a workload in Vidur with a profiling bundle; writes tmp/vidur_runs/<run_id>/."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gpu_simulate_test.cli._app import CONFIG_DIR, run_app


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="vidur_sim")
def main(cfg: DictConfig) -> None:
    from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim  # Vidur takes seconds to import

    print(run_app(run_vidur_sim, cfg))


if __name__ == "__main__":
    main()
