"""What vidur-sim's run-time hooks cost over stock Vidur, on the same input (not part of ``make test``).

The issue: 10,000 conversation requests under the ``vllm`` mapping (``backend=hf-generate``: one request at a time,
about two million iterations) took 134 s in vidur-sim where the sarathi mapping takes 17-23 s. Both sides here get
the very same ``SimulationConfig`` (``vidur_ext.simulate.simulation_config``: trace, scheduler, cache, predictor):

- **stock**: what ``python -m vidur.main`` does with it (``set_seeds``, ``Simulator(config).run()``), with Vidur's
  own trace-replay generator, ``Request`` and ``MetricsStore``. The one thing not stock is where the profiles come
  from: Vidur fetches them from the Hugging Face hub, unreachable here, so its predictor reads the bundle's files
  through ``vidur_ext.predictor`` (the same predictions, precomputed once; the lookups during the run are Vidur's);
- **hooks**: vidur-sim's ``TracingSimulator`` (``vidur_ext/tracing.py``: per-token times, one record per batch,
  preemption fixes, the progress callback), then turning its records into the run's tables (``records`` below);
- **vidur-sim**: the whole app, ``run_vidur_sim`` (validation, simulation, tables, CSV writing).

The predictor is trained once first (both sides then load it from the cache), so the phases compare the simulation
proper. The sides run alternately ``--repeats`` times and the least CPU time of each counts. ``--profile`` adds the
top functions of each side by cumulative time (cProfile, in extra runs that are not timed).

    .venv/bin/python benchmarks/bench_vidur_hooks.py [--requests 10000] [--qps 40] [--backend hf-generate] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from vidur.request_generator import RequestGeneratorRegistry
from vidur.request_generator.trace_replay_request_generator import TraceReplayRequestGenerator
from vidur.simulator import Simulator
from vidur.types import RequestGeneratorType
from vidur.utils.random import set_seeds

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.io.runs import tables_from_records
from gpu_simulate_test.testing import conversation_workload, h100_like_profile
from gpu_simulate_test.vidur_ext.registration import replace_registration
from gpu_simulate_test.vidur_ext.simulate import _iterations, _records, prepare, run_vidur_sim, simulation_config
from gpu_simulate_test.vidur_ext.tracing import TracingSimulator, TracingTraceReplayGenerator, reset_entity_ids

MAX_PROMPT = 8000
LIMIT_PCT = 15.0  # the hooks may add at most this much over stock Vidur


def _timed(fn: Callable[[], Any], profile: bool, label: str) -> tuple[Any, float]:
    """``fn()`` and the CPU seconds it took (CPU, not wall, time: on a shared host the other tenants' load would
    otherwise land on whichever side ran while they were busy)."""
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    out = prof.runcall(fn) if prof else fn()
    took = time.process_time() - t0
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(22)
        print(f"\n--- {label}: top functions by cumulative time (profiled run, {took:.1f} s)\n{buf.getvalue()}")
    return out, took


def stock(config: Any, profile: bool) -> tuple[float, float]:
    """``python -m vidur.main`` on ``config``: (build s, run s)."""
    replace_registration(RequestGeneratorRegistry, RequestGeneratorType.TRACE_REPLAY, TraceReplayRequestGenerator)
    reset_entity_ids()  # a fresh process, as vidur.main assumes (its class-level id counters)
    set_seeds(config.seed)
    sim, build = _timed(lambda: Simulator(config), False, "stock build")
    _, run = _timed(sim.run, profile, "stock Vidur")
    return build, run


def hooked(config: Any, app: Any, inputs: Any, profile: bool) -> tuple[float, float, float, int]:
    """vidur-sim's simulation on ``config``: (build s, run s, records s, batches)."""
    replace_registration(RequestGeneratorRegistry, RequestGeneratorType.TRACE_REPLAY, TracingTraceReplayGenerator)
    set_seeds(config.seed)
    sim, build = _timed(lambda: TracingSimulator(config), False, "hooks build")
    _, run = _timed(sim.run, profile, "vidur-sim hooks")
    _, records = _timed(lambda: (tables_from_records(_records(sim, inputs.workload)), _iterations(sim)), profile, "records")
    return build, run, records, sim.recorder.num_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--qps", type=float, default=40.0)
    ap.add_argument("--backend", default="hf-generate", help="hf-generate: the vllm mapping; hf-continuous: sarathi")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each side, alternated; the fastest counts")
    ap.add_argument("--profile", action="store_true", help="print each side's top functions (cProfile, extra runs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conversation_workload(root / "workloads", "conv", args.requests, args.qps, max_prompt=MAX_PROMPT)
        app = compose_app("vidur_sim", [f"paths.root={root}", "model=qwen3-0.6b", "hardware=h100", f"backend={args.backend}",
                                        "workload_id=conv", "profiling_root=bundle", "run_id=app"])
        h100_like_profile(root / "profiling", "bundle", model=app.model, hardware=app.hardware, backend=app.backend,
                          max_prompt=MAX_PROMPT, max_kv=16384)
        inputs = prepare(app)
        config = simulation_config(app, inputs, root / "scratch")
        _, train = _timed(lambda: Simulator(config), False, "training")  # into the cache: both sides below load it
        if args.profile:  # one profiled run of each, not timed
            stock(config, True)
            hooked(config, app, inputs, True)
        # Alternated and repeated, the fastest of each kept: the two sides see the same host.
        stock_runs, hooked_runs = [], []
        for _ in range(args.repeats):
            stock_runs.append(stock(config, False))
            hooked_runs.append(hooked(config, app, inputs, False))
        s_build, s_run = min(b for b, _ in stock_runs), min(r for _, r in stock_runs)
        h_build, h_run = min(h[0] for h in hooked_runs), min(h[1] for h in hooked_runs)
        h_records, batches = min(h[2] for h in hooked_runs), hooked_runs[0][3]
        _, whole = _timed(lambda: run_vidur_sim(app), False, "vidur-sim")
    over = 100.0 * (h_run - s_run) / s_run
    print(f"\n{args.requests} requests, backend={args.backend} ({inputs.scheduler.get_type()}), {batches:,} batches; "
          f"predictor trained once in {train:.1f} s")
    print("CPU seconds, fastest of the repeats:")
    print("| phase | stock Vidur (s) | vidur-sim hooks (s) | over stock |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| build (cluster, predictor from cache, trace) | {s_build:.1f} | {h_build:.1f} | {100 * (h_build - s_build) / s_build:+.1f}% |")
    print(f"| simulation loop | {s_run:.1f} | {h_run:.1f} | {over:+.1f}% |")
    print(f"| records -> tables (vidur-sim only) | - | {h_records:.1f} | |")
    print(f"| whole vidur-sim app (validation, simulation, tables, CSVs) | - | {whole:.1f} | |")
    print(f"stock Vidur: {1e6 * s_run / batches:.1f} us per batch; hooks add {1e6 * (h_run - s_run) / batches:+.1f} us per batch "
          f"({over:+.1f}%, limit +{LIMIT_PCT:g}%: {'within' if over <= LIMIT_PCT else 'OVER'})")


if __name__ == "__main__":
    main()
