"""``workload-spec``: write a deterministic, content-addressed workload under ``paths.workloads``."""

from __future__ import annotations

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.workloads.spec import generate_workload

main = hydra_app("workload_spec", generate_workload, lambda path: f"workload_id={path.name}\npath={path}")

if __name__ == "__main__":
    main()
