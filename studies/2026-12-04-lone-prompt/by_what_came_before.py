"""The published vllm runs' lone prompt steps (up to 256 tokens) by what came before them, run by run in time order.

    .venv/bin/python studies/2026-12-04-lone-prompt/by_what_came_before.py <publish root> <result folder>

A lone prompt step is a step of one prompt and nothing else (the vllm policy runs prompts first, so the decodes
running beside it wait). Its wall (``iteration_metrics.csv``: the decision to its tokens on the host) is grouped by
whether the engine was idle before it (the step began after the one before ended: the request reached an idle
engine) and by the batch of the step before it (decodes only). The same condition in two runs of one load shows
whether the step moves with the load or between runs. Run from the repository root after ``publish``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

BEFORE = [0, 1, 4, 16, 64, 128]  # decodes in the step before (bins)


def lone_prompts(it: pd.DataFrame) -> pd.DataFrame:
    """The run's lone prompt steps of up to 256 tokens after a decode-only step, with what came before each."""
    it = it.assign(wall_ms=(it["end_time_ns"] - it["start_time_ns"]) / 1e6,
                   before=it["batch_size"].shift(1), before_prefill=it["num_prefill_tokens"].shift(1),
                   idle_us=(it["start_time_ns"] - it["end_time_ns"].shift(1)) / 1e3)
    lone = it[(it["batch_size"] == 1) & it["num_prefill_tokens"].between(1, 256) & (it["before_prefill"] == 0)]
    return lone.assign(idle=lone["idle_us"] > 1, decodes_before=pd.cut(lone["before"], BEFORE))


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    runs = runs[runs["setup"] == "vllm"].sort_values("created_at")
    for _, run in runs.iterrows():
        lone = lone_prompts(pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv"))
        table = lone.groupby(["idle", "decodes_before"], observed=True)["wall_ms"].agg(steps="size", median_ms="median")
        busy = lone[~lone["idle"]]["wall_ms"]
        print(f"{run.created_at[11:19]} UTC  load {run.load_fraction:.0%} replicate {run.replicate} ({run.real_run}): "
              f"{len(lone)} steps, median {lone['wall_ms'].median():.3f} ms, not after idle {busy.median():.3f} ms")
        print(table[table["steps"] >= 5].round(3).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
