"""Does the host grid's way of timing steps put the engine in the slow hand-over state, or is the state the
machine's, met by runs too? One engine as the vllm bundle build loads it (``order.config``), in one ``stepping``
block, ``cycles`` times: the build's host grid in its order (each shape once), then a stream of lognormal requests at
``qps`` for ``seconds`` (dispatched at their arrival times from this thread, as real-bench does). Every step's host
share (wall less device, ``StepProbe``) goes to ``stream-<setup>.csv`` under ``$OUT`` with its cycle and part;
printed: the medians of decode steps of 1, 2, 4 requests packed ahead, by cycle and part.

    source scripts/gpu_env.sh && python3 studies/2026-12-03-build-grid/stream.py vllm 4 10.2 12
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from order import config  # noqa: E402

from gpu_simulate_test.backends import get_backend  # noqa: E402
from gpu_simulate_test.backends.recorder import Recorder, RunClock  # noqa: E402
from gpu_simulate_test.config import compose_app  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.bundle import _wanted_shapes, host_grid  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.host_share import stepping  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer, _prompt  # noqa: E402
from gpu_simulate_test.workloads.load import WorkloadRequest, load_workload  # noqa: E402
from gpu_simulate_test.workloads.spec import generate_workload  # noqa: E402


def main(setup: str, cycles: int, qps: float, seconds: float) -> int:
    cfg = config(setup)
    parsed = _wanted_shapes(cfg)
    timer = StepTimer(cfg.backend, [s for s, _ in parsed], cfg.profile.iteration_samples)
    grid_shapes = host_grid(build_grid(cfg.model, cfg.backend, cfg.profile), timer, cfg.backend.cuda_graph_token_sizes,
                            [s.num_tokens for s, _ in parsed], cfg.backend.cuda_graph_batch_sizes)
    timer = StepTimer(cfg.backend, [s for s, _ in parsed] + grid_shapes, cfg.profile.iteration_samples)
    grid_shapes = [s for s in grid_shapes if timer.unsupported(s) is None]
    spec = compose_app("workload_spec", ["workload=lognormal_long_tail", "workload.num_requests=1000",
                                         f"workload.arrival.qps={qps}", f"paths.root={tempfile.mkdtemp()}"])
    made = generate_workload(spec)
    stream = [r for r in load_workload(made.parent, made.name).requests
              if r.num_prefill_tokens + r.num_decode_tokens <= 4096][: int(qps * seconds)]
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend.check_workload(timer.plan())
    backend.load()
    vocab = backend.model_cfg.vocab_size
    parts: list[tuple[int, str, int, int]] = []  # cycle, part, first step, end step
    recorder = Recorder([], RunClock())
    rid = 10**6
    try:
        with stepping(backend, recorder) as probe:
            for c in range(cycles):
                at = recorder.num_steps
                for shape in grid_shapes:
                    timer.measure(backend, recorder, shape, probe)
                parts.append((c, "grid", at, recorder.num_steps))
                at, t0 = recorder.num_steps, time.monotonic()
                first = stream[0].arrival_time_ns
                for r in stream:
                    delay = (r.arrival_time_ns - first) / 1e9 - (time.monotonic() - t0)
                    if delay > 0:
                        time.sleep(delay)
                    rid += 1
                    backend.submit(WorkloadRequest(rid, recorder.clock.now(), r.num_prefill_tokens, r.num_decode_tokens),
                                   _prompt(r.num_prefill_tokens, vocab, rid))
                backend.wait_all()
                parts.append((c, "stream", at, recorder.num_steps))
                print(f"cycle {c}: grid and stream done, {recorder.num_steps} steps", flush=True)
            records = probe.records()
    finally:
        backend.close()
    steps = recorder.steps()
    rows = []
    for c, part, lo, hi in parts:
        for i in range(lo, hi):
            st, rec = steps[i], records[i]
            wall = st.end_ns - steps[i - 1].end_ns if i else None
            rows.append({"cycle": c, "part": part, "step": i, "requests": len(st.items),
                         "prefill_tokens": sum(x.num_tokens for x in st.items if x.is_prefill),
                         "wall_us": None if wall is None else wall / 1e3, "device_us": rec.device_ns / 1e3,
                         "at_start": rec.at_start})
    d = pd.DataFrame(rows)
    d["host_us"] = d.wall_us - d.device_us
    if os.environ.get("OUT"):
        d.to_csv(Path(os.environ["OUT"]) / f"stream-{setup}.csv", index=False)
    summarize(d)
    return 0


def summarize(d: pd.DataFrame) -> None:
    x = d[(d.prefill_tokens == 0) & ~d.at_start & d.requests.isin([1, 2, 4])]
    print(x.pivot_table(index=["cycle", "part"], columns="requests", values="host_us", aggfunc="median").round(0).to_string())
    print(x.pivot_table(index=["cycle", "part"], columns="requests", values="device_us", aggfunc="median").round(0).to_string())
    print(x.pivot_table(index=["cycle", "part"], columns="requests", values="host_us", aggfunc="count").to_string())


if __name__ == "__main__":
    if sys.argv[1] == "summarize":
        raise SystemExit(summarize(pd.read_csv(sys.argv[2])))
    raise SystemExit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
