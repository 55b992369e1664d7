"""``real-bench workload_id=<id> backend=<name> model=<name> hardware=<name>``: replay a workload on a real engine."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gpu_simulate_test.cli._app import CONFIG_DIR, run_app
from gpu_simulate_test.real_bench.run import run_real_bench


def _main(cfg: DictConfig) -> None:
    path = run_real_bench(cfg)
    print(path)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="real_bench")
def main(cfg: DictConfig) -> None:
    run_app(_main, cfg)


if __name__ == "__main__":
    main()
