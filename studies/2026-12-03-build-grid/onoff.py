"""Does ``StepProbe`` itself slow the steps it times? The published runs (no probe) held a decode of one request at
1117-1171 us wall on three leases; every measurement with the probe on (the builds' grids, ``stream.py``'s stream)
drifted between ~35 and ~100 us of host share, 1160-1250 us wall. One engine (``run_vs_grid.py``'s config of the
setup, ``PROBE_WHERE`` for a CPU smoke run), one recorder, a probe whose event timing is switched on and off
between segments (off: the launch alone, device time recorded as 0, so records stay aligned with steps):
``cycles`` times a stream of lognormal requests at ``qps`` for ``seconds`` with the probe on, then the same
requests with it off; then ``decode:n x 512`` rounds, on and off alternately. Every step to ``onoff-<setup>.csv``
under ``$OUT``; printed: the wall medians of decodes of 1, 2, 4 requests packed ahead at KV 300-900 (streams) by
segment, and the grid's; and the stream's lone prompts packed at their start, by tokens.

    source scripts/gpu_env.sh && python3 studies/2026-12-03-build-grid/onoff.py vllm 3 10.2 8
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-handover-state"))
from run_vs_grid import SETUPS, WHERE  # noqa: E402

from gpu_simulate_test.backends import get_backend  # noqa: E402
from gpu_simulate_test.backends.conditions import measured_run  # noqa: E402
from gpu_simulate_test.backends.recorder import Recorder, RunClock  # noqa: E402
from gpu_simulate_test.config import compose_app  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.host_share import StepProbe  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer, _prompt  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape  # noqa: E402
from gpu_simulate_test.workloads.load import WorkloadRequest, load_workload  # noqa: E402
from gpu_simulate_test.workloads.spec import generate_workload  # noqa: E402

DECODES = [BatchShape.parse(f"decode:{n}x512") for n in (1, 2, 4)]


class SwitchedProbe(StepProbe):
    """``StepProbe`` whose CUDA events can be switched off (``on = False``): then a launch is the launch alone."""

    on = True

    def __enter__(self) -> "SwitchedProbe":
        super().__enter__()
        timed_launch, plain_launch = self.runner.launch, type(self.runner).launch.__get__(self.runner)

        def launch(packed: Any) -> None:
            if self.on:
                timed_launch(packed)
            else:
                plain_launch(packed)
                self._launched = (self._at_start, 0)

        self.runner.launch = launch
        return self


def main(setup: str, cycles: int, qps: float, seconds: float) -> int:
    cfg = compose_app("vidur_profile", [*WHERE, *SETUPS[setup]])
    spec = compose_app("workload_spec", ["workload=lognormal_long_tail", "workload.num_requests=1000",
                                         f"workload.arrival.qps={qps}", f"paths.root={tempfile.mkdtemp()}"])
    made = generate_workload(spec)
    timer = StepTimer(cfg.backend, DECODES, 10)
    cap = timer.limits.token_budget
    stream = [r for r in load_workload(made.parent, made.name).requests
              if r.num_prefill_tokens <= cap and r.num_prefill_tokens + r.num_decode_tokens <= 4096][: int(qps * seconds)]
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    plan = timer.plan()
    plan.requests.extend(WorkloadRequest(10**6 + i, 0, r.num_prefill_tokens, r.num_decode_tokens) for i, r in enumerate(stream))
    backend.check_workload(plan)
    backend.load()
    vocab = backend.model_cfg.vocab_size
    parts: list[tuple[int, str, bool, int, int]] = []
    recorder = Recorder([], RunClock())
    rid = 10**6
    try:
        probe = SwitchedProbe(backend.native_engine()).__enter__()
        with measured_run():
            backend.start(recorder)
            try:
                for c in range(cycles):
                    for on in (True, False):
                        probe.on = on
                        at, t0, first = recorder.num_steps, time.monotonic(), stream[0].arrival_time_ns
                        for r in stream:
                            delay = (r.arrival_time_ns - first) / 1e9 - (time.monotonic() - t0)
                            if delay > 0:
                                time.sleep(delay)
                            rid += 1
                            backend.submit(WorkloadRequest(rid, recorder.clock.now(), r.num_prefill_tokens,
                                                           r.num_decode_tokens), _prompt(r.num_prefill_tokens, vocab, rid))
                        backend.wait_all()
                        parts.append((c, "stream", on, at, recorder.num_steps))
                        print(f"cycle {c} stream probe {'on' if on else 'off'}: {recorder.num_steps - at} steps", flush=True)
                for c in range(cycles):
                    for on in (True, False):
                        probe.on = on
                        at = recorder.num_steps
                        for shape in DECODES:
                            timer.measure(backend, recorder, shape, None)
                        parts.append((c, "grid", on, at, recorder.num_steps))
                records = probe.records()
            finally:
                backend.stop()
                probe.__exit__(None, None, None)
    finally:
        backend.close()
    steps = recorder.steps()
    rows = []
    for c, part, on, lo, hi in parts:
        for i in range(lo, hi):
            st, rec = steps[i], records[i]
            decodes = [x for x in st.items if not x.is_prefill]
            rows.append({"cycle": c, "part": part, "probe": on, "step": i, "requests": len(st.items),
                         "prefill_tokens": sum(x.num_tokens for x in st.items if x.is_prefill),
                         "mean_kv": float(np.mean([x.kv_tokens for x in decodes])) if decodes else None,
                         "wall_us": (st.end_ns - steps[i - 1].end_ns) / 1e3 if i else None,
                         "device_us": rec.device_ns / 1e3 if on else None, "at_start": rec.at_start})
    d = pd.DataFrame(rows)
    if os.environ.get("OUT"):
        d.to_csv(Path(os.environ["OUT"]) / f"onoff-{setup}.csv", index=False)
    summarize(d)
    return 0


def summarize(d: pd.DataFrame) -> None:
    x = d[(d.prefill_tokens == 0) & ~d.at_start.astype(bool) & d.requests.isin([1, 2, 4])
          & (d.part.eq("grid") | d.mean_kv.between(300, 900))]
    for what in ("wall_us", "device_us"):
        print(what)
        print(x.pivot_table(index=["part", "cycle", "probe"], columns="requests", values=what, aggfunc="median").round(0).to_string())
    print(x.pivot_table(index=["part", "cycle", "probe"], columns="requests", values="wall_us", aggfunc="count").to_string())
    p = d[(d.part == "stream") & (d.prefill_tokens > 0) & (d.requests == 1) & d.at_start.astype(bool)].copy()
    p["tokens"] = pd.cut(p.prefill_tokens, [0, 128, 256, 512, 1024, 2048, 4096])
    print("lone prompts packed at their start (the stream, all cycles): wall from the step before's end, device")
    print(p.groupby(["tokens", "probe"], observed=True).agg(steps=("wall_us", "size"), wall_us=("wall_us", "median"),
                                                            device_us=("device_us", "median")).round(0).to_string())


if __name__ == "__main__":
    if sys.argv[1] == "summarize":
        raise SystemExit(summarize(pd.read_csv(sys.argv[2])))
    raise SystemExit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
