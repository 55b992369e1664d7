"""The 10% points' TTFT, split by whether a request reached an idle engine, and every real step by the idle gap
before it, predicted from its own batch (no GPU; run from the repository root after ``publish``):

    .venv/bin/python studies/2026-12-04-campaign/idle_arrivals.py tmp/publish-h200-native docs/results/h200-qwen3-0.6b-native

An idle arrival is a request whose first step began after the step before it had ended (a gap over 50 us: the
engine had nothing to run when the request came). The step error is the bundle's prediction of that real step from
its own batch (``vidur_ext/replay.py``, as ``tables/replay.csv``) against its wall. The paired TTFT difference is
real - sim per request, from the point's comparison (``tables/requests.csv``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.campaign import experiment_app
from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps

IDLE_NS = 50_000
GAP_BINS_MS = [-1.0, 0.05, 5.0, 50.0, 1e9]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, f"scripts/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def first_steps(it: pd.DataFrame) -> dict[int, int]:
    """Request id -> index of the first step that carries it."""
    first: dict[int, int] = {}
    for i, reqs in enumerate(it["requests"]):
        for rid, _ in parse_requests_field(str(reqs)):
            first.setdefault(rid, i)
    return first


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    camp, decompose = script("h200_native_sweep").CAMPAIGN, script("ttft_decomposition").decompose
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    replay = pd.read_csv(folder / "tables" / "replay.csv").set_index("point_key")
    sweep = pd.read_csv(folder / "tables" / "sweep.csv")
    todo = runs[(runs["replicate"] == 0) & (runs["load_fraction"] == 0.1)]
    for _, run in todo.iterrows():
        real = root / "real_runs" / run.real_run
        it = pd.read_csv(real / "iteration_metrics.csv")
        rq = pd.read_csv(real / "request_metrics.csv")
        app = experiment_app(root, camp.overrides(run.setup, run.workload, run.load_fraction, 0))
        bundle = load_profiling_root(root / "profiling" / replay.loc[run.point_key, "bundle_id"], check_tables=False)
        steps = replay_steps(bundle, it, dispatched=dict(zip(rq["request_id"], rq["dispatch_time_ns"])),
                             model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                             cache_root=Path(app.paths.cache))
        gap = (it["start_time_ns"] - it["end_time_ns"].shift(1)).fillna(0)
        steps = steps.assign(gap_ms=pd.cut(gap / 1e6, GAP_BINS_MS), excess_ms=(steps["measured_ns"] - steps["predicted_ns"]) / 1e6,
                             lone_prompt=(steps["batch_size"] == 1) & (steps["prompt_tokens"] > 0))
        print(f"== {run.setup} {run.workload} 10% ({run.real_run}, bundle {replay.loc[run.point_key, 'bundle_id']})")
        table = steps.groupby(["lone_prompt", "gap_ms"], observed=True).agg(
            steps=("error_pct", "size"), error_p50_pct=("error_pct", "median"), excess_p50_ms=("excess_ms", "median"))
        print("every real step by the idle gap before it (lone_prompt: one request, a prompt chunk):")
        print(table.round(3).to_string())
        cmp = next((root / "comparisons").glob(f"cmp-{run.real_run}--vidur-*"))
        pairs = pd.read_csv(cmp / "tables" / "requests.csv").set_index("request_id")
        first = first_steps(it)
        idle = pd.Series({rid: bool(gap.iloc[i] > IDLE_NS) for rid, i in first.items()})
        diff = (pairs["ttft_real_ns"] - pairs["ttft_sim_ns"]) / 1e6
        real_parts, sim_parts = decompose(real), decompose(root / "vidur_runs" / cmp.name.split("--")[1])
        by = pd.DataFrame({"idle_arrival": idle.reindex(diff.index).fillna(False), "ttft": diff,
                           "wait": (real_parts["wait_ns"] - sim_parts["wait_ns"]) / 1e6,
                           "prefill_span": (real_parts["prefill_span_ns"] - sim_parts["prefill_span_ns"]) / 1e6,
                           "real_ms": pairs["ttft_real_ns"] / 1e6})
        # when the engine last woke (the first step after an idle gap) before each request's arrival
        woke = it["start_time_ns"][gap > IDLE_NS].to_numpy()
        arrival = rq.set_index("request_id")["arrival_time_ns"].reindex(by.index).to_numpy()
        last = woke[(woke.searchsorted(arrival, side="right") - 1).clip(0)]
        since = pd.Series((arrival - last) / 1e6, index=by.index)
        by["arrival"] = by["idle_arrival"].map({True: "idle"})
        by["arrival"] = by["arrival"].fillna(pd.cut(since, [-1e9, 10, 1e9], labels=["busy, woke < 10 ms before", "busy, longer"]).astype(str))
        print("paired real - sim (ms, median per request) by arrival; wait = arrival to the first step's start:")
        print(by.groupby("arrival").agg(requests=("ttft", "size"), ttft=("ttft", "median"), wait=("wait", "median"),
                                             prefill_span=("prefill_span", "median")).round(3).to_string())
        cell = {"lognormal": 0.5, "gamma": 0.5, "conversation": 0.9}[run.workload]
        lo, hi = by["real_ms"].quantile([cell - 0.05, cell + 0.05])
        near = by[by["real_ms"].between(lo, hi)]
        print(f"the requests around real TTFT P{cell * 100:.0f} (P{(cell - 0.05) * 100:.0f}-P{(cell + 0.05) * 100:.0f}, "
              f"{lo:.2f}-{hi:.2f} ms): {len(near)}, {int(near['idle_arrival'].sum())} idle arrivals; paired TTFT median "
              f"{near.loc[near['idle_arrival'], 'ttft'].median():+.3f} ms (idle), "
              f"{near.loc[~near['idle_arrival'], 'ttft'].median():+.3f} ms (the others)")
        qs = [round(cell + d, 2) for d in (-0.06, -0.04, -0.02, 0.0, 0.02, 0.04, 0.06)]
        sim_ms = pairs["ttft_sim_ns"] / 1e6
        print("TTFT quantiles around it (ms): " + "; ".join(
            f"P{q * 100:.0f} real {by['real_ms'].quantile(q):.2f} sim {sim_ms.quantile(q):.2f}" for q in qs))
        cells = sweep[(sweep.setup == run.setup) & (sweep.workload == run.workload) & (sweep.load_fraction == 0.1)
                      & (sweep.metric == "ttft") & sweep.statistic.isin(["p50", "p90", "p99"])]
        print("TTFT cells:", "; ".join(f"{c.statistic} {c.error_pct:+.1f}%" for c in cells.itertuples()) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
