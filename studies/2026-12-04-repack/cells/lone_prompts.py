"""The vllm setup's lone prompt steps, measured against the bundle's prediction of each, by load and prompt length.

    .venv/bin/python studies/2026-12-04-repack/cells/lone_prompts.py <publish root> <result folder> <load> ...

Every step of the vllm lognormal point's first replicate that holds one prompt alone, predicted from its own batch
(``vidur_ext/replay.py``; ``packed_at_start``: the prompt arrived while the step before ran, so the engine packed
this step at its start, the bundle's ``serial`` host term), medians by prompt length. The same prompt lengths at two
loads on one GPU show whether the engine's step, not the prediction, moved. Run from the repository root after
``publish``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    bundle_id = pd.read_csv(folder / "tables" / "bundle_test.csv").groupby("setup")["bundle_id"].first()["vllm"]
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    bundle = load_profiling_root(root / "profiling" / bundle_id, check_tables=False)
    for load in sys.argv[3:]:
        run = runs[(runs["setup"] == "vllm") & (runs["load_fraction"] == float(load)) & (runs["replicate"] == 0)].iloc[0]
        it = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
        steps = replay_steps(bundle, it, model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                             cache_root=Path(app.paths.cache),
                             dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
        lone = steps[(steps["batch_size"] == 1) & (steps["prompt_tokens"] > 0)]
        table = lone.groupby([pd.cut(lone["prompt_tokens"], [0, 256, 512, 1024, 2048, 4096]), "packed_at_start"],
                             observed=True).agg(steps=("error_pct", "size"), measured_ms=("measured_ns", "median"),
                                                predicted_ms=("predicted_ns", "median"), error_pct=("error_pct", "median"))
        table[["measured_ms", "predicted_ms"]] /= 1e6
        print(f"vllm lognormal {float(load):.0%} ({run.real_run}, {run.gpu_uuid[:12]}, {run.created_at})")
        print(table.round(3).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
