"""How long a request handed to an idle native engine waits for its step to start, by what the dispatcher does after
the hand-over.

In the campaign's 10% runs a request that reached an idle engine started its step 0.39-0.42 ms after its dispatch
when real-bench's dispatcher next waited 20 ms or more (it calls ``on_idle`` then: the progress bar, drawn at most
every 0.25 s), 0.25-0.29 ms when it waited less; vidur-profile's harness, which waits for the request at once,
measured 0.08-0.19 ms (``studies/2026-12-04-idle-start/``). Here one engine gets lone prompts (``--tokens``, one output
token: one step each) ``--gap-ms`` apart, always on an idle engine, handed over four ways, in rounds with the ways in
a fresh order each round:

- ``replay_far``: real-bench's ``replay`` with ``on_idle`` = a real ``RunProgress.redraw``, every arrival far apart;
- ``replay_quiet``: the same without ``on_idle``;
- ``replay_near``: arrivals in pairs 2 ms apart (the first of a pair is timed: its dispatcher next sleeps 1.7 ms and
  spins 0.3 ms, as for a near arrival in a run);
- ``harness``: vidur-profile's own ``StepTimer.idle_start`` (submit, then wait for the engine at once).

Every way runs under real-bench's conditions (``measured_run``). Per request: its dispatch to its step's start (the
wake-up) and the step's wall; medians and quartiles per way go to stdout and ``--out``/wake.csv.

Run on a GPU host (``source scripts/gpu_env.sh`` first): ``python3 scripts/idle_wake.py --out DIR``; on the CPU
(``--hardware cpu --model qwen3-tiny``) a smoke run.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional

from gpu_simulate_test.backends import get_backend
from gpu_simulate_test.backends.conditions import measured_run
from gpu_simulate_test.backends.recorder import Recorder, RunClock
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.real_bench.progress import RunProgress
from gpu_simulate_test.real_bench.replay import replay
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

WAYS = ("replay_far", "replay_quiet", "replay_near", "harness")
NEAR_NS = 2_000_000


def one_way(way: str, backend, recorder: Recorder, timer: StepTimer, progress: RunProgress, first_id: int, n: int,
            tokens: int, gap_ns: int, prompt: list[int]) -> list[tuple[int, int]]:
    """``n`` timed requests handed over ``way``; per timed request its wake-up and its step's wall (ns). ``harness``
    is vidur-profile's own (``StepTimer.idle_start``, whose request ids are its own); the replays' ids start at
    ``first_id``."""
    if way == "harness":
        return [timer.idle_start(backend, recorder, tokens, gap_ns)[1:] for _ in range(n)]
    clock = recorder.clock
    dispatched: dict[int, int] = {}
    backend.wait_all()
    since, start = recorder.num_steps, clock.now() + gap_ns
    requests, timed, rid = [], [], first_id
    for i in range(n):
        at = start + i * gap_ns
        requests.append(WorkloadRequest(rid, at, tokens, 1))
        timed.append(rid)
        rid += 1
        if way == "replay_near":
            requests.append(WorkloadRequest(rid, at + NEAR_NS, tokens, 1))
            rid += 1
    on_idle: Optional[Callable[[], None]] = progress.redraw if way == "replay_far" else None
    replay(requests, lambda r: backend.submit(r, prompt), clock,
           on_dispatch=lambda r, t: dispatched.__setitem__(r.request_id, t), on_idle=on_idle)
    backend.wait_all()
    starts: dict[int, tuple[int, int]] = {}
    for st in recorder.steps(since):
        for item in st.items:
            starts.setdefault(item.request_id, (st.start_ns, st.end_ns))
    return [(starts[r][0] - dispatched[r], starts[r][1] - starts[r][0]) for r in timed]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--hardware", default="h200")
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--gap-ms", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=10, help="timed requests per way and round")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    app = compose_app("real_bench", ["workload_id=idle-wake", "backend=native", f"hardware={args.hardware}",
                                     f"model={args.model}", "backend.vidur_scheduler=sarathi"])
    backend = get_backend("native")(app.backend, app.model, app.hardware, app.seed)
    backend.check_workload(Workload(workload_id="idle-wake", path=Path("<idle_wake.py>"), meta={},
                                    requests=[WorkloadRequest(0, 0, args.tokens, 1)]))
    backend.load()
    prompt = [10 + (7 * i) % 1000 for i in range(args.tokens)]
    timer = StepTimer(app.backend, [], 1)
    rows: list[dict] = []
    with measured_run(), RunProgress(args.rounds * len(WAYS) * args.samples, lambda: len(rows)) as progress:
        recorder = Recorder([], RunClock())
        backend.start(recorder)
        try:
            # a warm-up round, untimed: the first steps of a fresh engine are slower
            one_way("harness", backend, recorder, timer, progress, 0, 3, args.tokens, int(args.gap_ms * 1e6), prompt)
            next_id = 10**7  # the replays' ids, apart from the harness's (0 up)
            for r in range(args.rounds):
                for way in random.Random(r).sample(WAYS, len(WAYS)):
                    got = one_way(way, backend, recorder, timer, progress, next_id, args.samples, args.tokens,
                                  int(args.gap_ms * 1e6), prompt)
                    next_id += 2 * args.samples
                    rows += [{"round": r, "way": way, "wake_ns": w, "wall_ns": s} for w, s in got]
        finally:
            backend.stop()
            backend.close()
    with open(args.out / "wake.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.hardware}, {args.model}: lone prompts of {args.tokens} tokens {args.gap_ms:g} ms apart, "
          f"{args.rounds} rounds x {args.samples} a way (ms: wake-up = dispatch to step start)")
    for way in WAYS:
        wake = sorted(x["wake_ns"] / 1e6 for x in rows if x["way"] == way)
        wall = [x["wall_ns"] / 1e6 for x in rows if x["way"] == way]
        q = statistics.quantiles(wake, n=4)
        print(f"  {way:13s} wake median {statistics.median(wake):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}), "
              f"step wall median {statistics.median(wall):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
