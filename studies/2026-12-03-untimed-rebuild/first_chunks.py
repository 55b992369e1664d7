"""A prompt's first chunk beside decodes (sarathi): measured less predicted (us), by how the engine packed the step
and by load, and for the steps packed at their start by batch size and by the prompt's whole length.

    .venv/bin/python studies/2026-12-03-untimed-rebuild/first_chunks.py <publish root> <runs.csv> <setup> <workload> \
        <replay dir>

``replay dir``: ``replay_points.py``'s output. A first chunk is the step's prompt chunk whose KV after the step equals
its tokens (no cached prefix). Run from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.io.schemas import parse_kv_tokens_field, parse_requests_field


def prompt_entry(step: pd.Series) -> tuple[int, int, int] | None:
    """(request id, chunk tokens, KV after the step) of the step's prompt chunk, or None for a decode-only step."""
    for (rid, tokens), kv in zip(parse_requests_field(step["requests"]), parse_kv_tokens_field(str(step["kv_tokens"]))):
        if tokens > 1:
            return rid, tokens, kv
    return None


def main() -> int:
    root, runs_csv, setup, workload, replay = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4],
                                               Path(sys.argv[5]))
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["setup"] == setup) & (runs["workload"] == workload)].sort_values(["load_fraction", "replicate"])
    rows = []
    for run in runs.itertuples():
        steps = pd.read_csv(root / "real_runs" / run.real_run / "iteration_metrics.csv")
        reqs = pd.read_csv(root / "real_runs" / run.real_run / "request_metrics.csv")
        prompt_len = dict(zip(reqs["request_id"].astype(int), reqs["num_prefill_tokens"]))
        d = pd.read_csv(replay / f"{setup}-{workload}-{run.load_fraction}-r{run.replicate}.csv")
        steps = steps.merge(d[["iteration_id", "measured_ns", "predicted_ns", "packed_at_start"]], on="iteration_id")
        steps = steps[(steps["num_prefill_tokens"] > 0) & (steps["batch_size"] > 1)].copy()
        entry = steps.apply(prompt_entry, axis=1)
        steps["first"] = [e is not None and e[1] == e[2] for e in entry]
        steps["prompt_len"] = [prompt_len.get(e[0], np.nan) if e else np.nan for e in entry]
        steps["residual_us"] = (steps["measured_ns"] - steps["predicted_ns"]) / 1e3
        steps["error_pct"] = 100 * (steps["predicted_ns"] / steps["measured_ns"] - 1)
        steps["load"], steps["replicate"] = f"{run.load_fraction:.0%}", run.replicate
        rows.append(steps)
    a = pd.concat(rows)
    pd.set_option("display.width", 200)
    print(f"{setup} {workload}: steps with a prompt chunk beside decodes, median error % of the predicted step "
          "(steps), by chunk and packing")
    g = a.groupby(["load", "replicate", "first", "packed_at_start"])
    print(pd.DataFrame({"steps": g.size(), "error %": g["error_pct"].median().round(1),
                        "measured us": (g["measured_ns"].median() / 1e3).round(0),
                        "predicted us": (g["predicted_ns"].median() / 1e3).round(0)}).to_string())
    first = a[a["first"] & a["packed_at_start"]].copy()
    first["requests"] = pd.cut(first["batch_size"], [1, 8, 16, 32, 48, 64, 128])
    first["prompt"] = pd.cut(first["prompt_len"], [0, 512, 1024, 2048, 4096, 1 << 20])
    for by in ("requests", "prompt"):
        print(f"\nfirst chunks packed at the step's start: median measured - predicted (us) by {by} and load "
              "(both replicates; steps in brackets)")
        med = first.pivot_table(index=by, columns="load", values="residual_us", aggfunc="median", observed=True)
        n = first.pivot_table(index=by, columns="load", values="residual_us", aggfunc="count", observed=True)
        print(med.round(0).astype("Int64").astype(str).add(" (").add(n.astype("Int64").astype(str)).add(")")
              .replace("<NA> (<NA>)", "").to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
