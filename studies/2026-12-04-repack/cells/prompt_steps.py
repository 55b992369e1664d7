"""The vllm setup's TTFT, a prompt's step and the step in flight at its arrival, real against simulated.

    .venv/bin/python studies/2026-12-04-repack/cells/prompt_steps.py <publish root> <result folder> <load> ...

With whole prompts first a TTFT is the rest of the step in flight when the prompt arrives plus the prompt's own step
(lone at low load). For the vllm lognormal point at each load (first replicate, the simulation ``publish`` compared
with it last): the median duration of the steps that hold one prompt alone, and the median rest of the step in
flight at arrival, by prompt length, in both runs. Run from the repository root after ``publish``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

BINS = [0, 256, 512, 1024, 2048, 4096]


def parts(run: Path) -> pd.DataFrame:
    it = pd.read_csv(run / "iteration_metrics.csv")
    reqs = pd.read_csv(run / "request_metrics.csv")
    ends = it["end_time_ns"].to_numpy()
    lone = it[(it["batch_size"] == 1) & (it["num_prefill_tokens"] > 0)]
    lone_ms = dict(zip(lone["end_time_ns"], (lone["end_time_ns"] - lone["start_time_ns"]) / 1e6))
    in_flight_end = ends[np.minimum(np.searchsorted(ends, reqs["arrival_time_ns"].to_numpy()), len(ends) - 1)]
    return pd.DataFrame({"prompt": pd.cut(reqs["num_prefill_tokens"], BINS),
                         "lone_prompt_step_ms": reqs["first_token_time_ns"].map(lone_ms),
                         "rest_of_step_in_flight_ms": (in_flight_end - reqs["arrival_time_ns"]) / 1e6,
                         "ttft_ms": reqs["ttft_ns"] / 1e6})


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    for load in sys.argv[3:]:
        real = runs[(runs["setup"] == "vllm") & (runs["load_fraction"] == float(load))
                    & (runs["replicate"] == 0)]["real_run"].iloc[0]
        cmp = sorted((root / "comparisons").glob(f"cmp-{real}--vidur-*"), key=lambda p: p.stat().st_mtime)[-1]
        sim = cmp.name.split("--", 1)[1]
        r, s = parts(root / "real_runs" / real), parts(root / "vidur_runs" / sim)
        print(f"vllm lognormal {float(load):.0%}: {real} against {sim}")
        for q in (50, 90, 99):
            a, b = np.percentile(r["ttft_ms"], q), np.percentile(s["ttft_ms"], q)
            print(f"  TTFT P{q}: real {a:.2f} ms, sim {b:.2f} ms ({100 * (b / a - 1):+.1f}%)")
        cols = ["lone_prompt_step_ms", "rest_of_step_in_flight_ms"]
        table = pd.merge(r.groupby("prompt", observed=True)[cols].median(),
                         s.groupby("prompt", observed=True)[cols].median(), left_index=True, right_index=True,
                         suffixes=("", " (sim)"))
        table.insert(0, "requests", r.groupby("prompt", observed=True).size())
        table["lone prompt error %"] = 100 * (table["lone_prompt_step_ms (sim)"] / table["lone_prompt_step_ms"] - 1)
        print(table.round(3).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
