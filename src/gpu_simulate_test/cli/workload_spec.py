"""``workload-spec``: write a deterministic, content-addressed workload under ``paths.workloads``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gpu_simulate_test.cli._app import CONFIG_DIR, run_app
from gpu_simulate_test.workloads.spec import generate_workload


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="workload_spec")
def main(cfg: DictConfig) -> None:
    path = run_app(generate_workload, cfg)
    print(f"workload_id={path.name}\npath={path}", flush=True)


if __name__ == "__main__":
    main()
