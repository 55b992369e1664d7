"""Steps with one prompt chunk of >= 400 tokens beside 1-16 decodes, by the chunk's prefix: measured, predicted, error.

    .venv/bin/python studies/2026-12-03-first-chunk/by_prefix.py <bundle dir> <runs.csv> <real_runs dir> [workload ...]

``runs.csv`` and ``real_runs``: a ``publish`` of the campaign's result folder (its ``tables/runs.csv`` and its
root's ``real_runs/``). First replicates; every step predicted from its own batch as vidur-sim reads the bundle
(``vidur_ext/replay.py``); medians per point, decodes (1-8, 9-16) and prefix bin; then the steps holding a first chunk
(any size, beside 1-16 decodes) by their request's whole prompt: the time the prediction misses (the publish root's
``workloads/`` give the prompts). Run from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps, step_shapes

PREFIX_BINS = [-1, 0, 256, 512, 1024, 2048, 4096, 1 << 20]


PROMPT_BINS = [0, 256, 512, 1024, 2048, 4096, 1 << 20]


def one_run(bundle: Path, real_run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    it = pd.read_csv(real_run / "iteration_metrics.csv")
    reqs = pd.read_csv(real_run / "request_metrics.csv")
    pred = replay_steps(load_profiling_root(bundle, check_tables=False), it, model=app.model, hardware=app.hardware,
                        vidur=app.vidur, seed=int(app.seed), cache_root=Path(app.paths.cache),
                        dispatched=dict(zip(reqs["request_id"], reqs["dispatch_time_ns"])))
    meta = pd.read_json(real_run / "run_meta.json", typ="series")
    lengths = pd.read_csv(real_run.parent.parent / "workloads" / meta["inputs"]["workload_id"] / "trace_lengths.csv")
    prompt_of = dict(zip(lengths["request_id"], lengths["num_prefill_tokens"]))
    rows, firsts = [], []
    for requests, kv, measured, predicted in zip(it["requests"], it["kv_tokens"], pred["measured_ns"],
                                                 pred["predicted_ns"]):
        shapes = step_shapes(requests, kv)
        chunks = [(q, k) for q, k in shapes if q > 1]
        decodes = len(shapes) - len(chunks)
        if len(chunks) == 1 and chunks[0][0] >= 400 and 1 <= decodes <= 16:
            q, k = chunks[0]
            rows.append((decodes, k - q, measured / 1e3, predicted / 1e3))
        if len(chunks) == 1 and chunks[0][0] == chunks[0][1] and 1 <= decodes <= 16:  # a first chunk, any size
            rid = next(r for r, (q, _) in zip(parse_requests_field(str(requests)), shapes) if q > 1)[0]
            firsts.append((prompt_of[rid], (measured - predicted) / 1e3))
    df = pd.DataFrame(rows, columns=["decodes", "prefix", "measured_us", "predicted_us"])
    df["decodes"] = pd.cut(df["decodes"], [0, 8, 16], labels=["1-8", "9-16"])
    df["prefix"] = pd.cut(df["prefix"], PREFIX_BINS)
    g = df.groupby(["decodes", "prefix"], observed=True)
    out = g[["measured_us", "predicted_us"]].median()
    out.insert(0, "steps", g.size())
    out["error_pct"] = 100 * (out["predicted_us"] - out["measured_us"]) / out["measured_us"]
    f = pd.DataFrame(firsts, columns=["prompt", "missed_us"])
    by_prompt = f.groupby(pd.cut(f["prompt"], PROMPT_BINS), observed=True)["missed_us"].agg(["size", "median"])
    return out.round(1), by_prompt.rename(columns={"size": "steps", "median": "measured - predicted, us"}).round(0)


def main() -> int:
    bundle, runs_csv, real_runs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    workloads = sys.argv[4:] or ["lognormal", "gamma", "conversation"]
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["replicate"] == 0) & (runs["setup"] == "sarathi") & runs["workload"].isin(workloads)]
    pd.set_option("display.width", 200)
    for run in runs.sort_values(["workload", "load_fraction"]).itertuples():
        print(f"== {run.workload} {run.load_fraction:g} ({run.real_run}); bundle {bundle.name}")
        by_prefix, by_prompt = one_run(bundle, real_runs / run.real_run)
        print(by_prefix.to_string())
        print("  a first chunk (any size, beside 1-16 decodes), by its request's whole prompt:")
        print(by_prompt.to_string())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
