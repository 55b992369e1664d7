"""The vllm setup's lone prompt steps, measured against the bundle's prediction of each, by load and prompt length.

    .venv/bin/python studies/2026-12-04-repack/cells/lone_prompts.py <publish root> <result folder> <load>[:<replicate>] ...

Every step of a vllm lognormal point's replicate (the first, 0, unless told) that holds one prompt alone, predicted from its own batch
(``vidur_ext/replay.py``; ``packed_at_start``: the prompt arrived while the step before ran, so the engine packed
this step at its start, the bundle's ``serial`` host term), medians by prompt length. The same prompt lengths at two
loads on one GPU show whether the engine's step, not the prediction, moved; the second replicate of 10%, run on
that GPU after both of 30%, tells the load from the time. Run from the repository root after
``publish``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from point import replayed


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    for arg in sys.argv[3:]:
        load, _, replicate = arg.partition(":")
        run, _, _, steps = replayed(root, folder, "vllm", "lognormal", float(load), int(replicate or 0))
        lone = steps[(steps["batch_size"] == 1) & (steps["prompt_tokens"] > 0)]
        table = lone.groupby([pd.cut(lone["prompt_tokens"], [0, 256, 512, 1024, 2048, 4096]), "packed_at_start"],
                             observed=True).agg(steps=("error_pct", "size"), measured_ms=("measured_ns", "median"),
                                                predicted_ms=("predicted_ns", "median"), error_pct=("error_pct", "median"))
        table[["measured_ms", "predicted_ms"]] /= 1e6
        print(f"vllm lognormal {float(load):.0%} replicate {run.replicate} ({run.real_run}, {run.gpu_uuid[:12]}, {run.created_at})")
        print(table.round(3).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
