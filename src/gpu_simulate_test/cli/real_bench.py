"""``real-bench workload_id=<id> backend=<name> model=<name> hardware=<name>``: replay a workload on a real engine."""

from __future__ import annotations

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.real_bench.run import run_real_bench

main = hydra_app("real_bench", run_real_bench, str)

if __name__ == "__main__":
    main()
