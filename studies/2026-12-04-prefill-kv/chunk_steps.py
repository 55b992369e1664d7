"""Steps with one prompt chunk, by the chunk's prefix, the decodes beside it and whether it was packed at its start.

    .venv/bin/python studies/2026-12-04-prefill-kv/chunk_steps.py <publish root> <result folder> <workload>:<load> ...

Every step of a sarathi point's first replicate that holds exactly one prompt chunk, predicted from its own batch
with the point's bundle as published (``vidur_ext/replay.py``): medians of the measured and predicted step and of
the error, for groups of at least 10 steps. A prefix of 0 is a first chunk; ``packed_at_start`` True with no decode
beside it is a prompt that reached an idle engine. Run from the repository root after ``publish``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.vidur_ext.replay import step_shapes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-04-repack" / "cells"))
from point import replayed  # noqa: E402


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    for arg in sys.argv[3:]:
        workload, load = arg.split(":")
        _, it, _, steps = replayed(root, folder, "sarathi", workload, float(load))
        shapes = [step_shapes(r, k) for r, k in zip(it["requests"], it["kv_tokens"])]
        steps = steps.assign(chunks=[sum(q > 1 for q, _ in a) for a in shapes],
                             chunk=[max((q for q, _ in a if q > 1), default=0) for a in shapes],
                             prefix=[max((kv - q for q, kv in a if q > 1), default=-1) for a in shapes],
                             decodes=[sum(q == 1 for q, _ in a) for a in shapes])
        one = steps[steps["chunks"] == 1]
        one = one.assign(prefix_tokens=pd.cut(one["prefix"], [-1, 0, 511, 512, 1023, 1024, 10**6]),
                         decodes_beside=pd.cut(one["decodes"], [-1, 0, 2, 8, 128]))
        table = one.groupby(["prefix_tokens", "decodes_beside", "packed_at_start"], observed=True).agg(
            steps=("error_pct", "size"), chunk=("chunk", "median"), measured_ms=("measured_ns", "median"),
            predicted_ms=("predicted_ns", "median"), error_pct=("error_pct", "median"))
        table[["measured_ms", "predicted_ms"]] /= 1e6
        print(f"sarathi {workload} {float(load):.0%}: steps with one prompt chunk")
        print(table[table["steps"] >= 10].round(3).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
