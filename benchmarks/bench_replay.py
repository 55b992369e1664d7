"""Dispatch lateness of the replay loop at 1,000 requests/s (target: p99 < 1 ms).

First with a do-nothing engine (the loop alone), then next to a busy engine thread in the same
interpreter (pure-Python work that holds the GIL, and torch CPU matmuls), at the default GIL switch
interval and at the one real-bench uses. These are the numbers behind the design in specs/run.md.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, Optional

from gpu_simulate_test.backends.recorder import RunClock
from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S
from gpu_simulate_test.real_bench.replay import lateness_stats, replay
from gpu_simulate_test.workloads.load import WorkloadRequest

RATE = 1_000  # requests/s
N = 2_000


def _python_engine(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(2_000))  # holds the GIL like Python-side engine bookkeeping


def _torch_engine(stop: threading.Event) -> None:
    import torch

    torch.set_num_threads(1)  # measure the GIL, not two threads fighting over this machine's cores
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)  # like a forward pass on the CPU: kernels release the GIL


def measure(engine: Optional[Callable[[threading.Event], None]], interval_s: float) -> dict:
    reqs = [WorkloadRequest(i, i * 1_000_000_000 // RATE, 1, 1) for i in range(N)]
    stop = threading.Event()
    thread = threading.Thread(target=engine, args=(stop,), daemon=True) if engine else None
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    late: list[int] = []
    try:
        if thread:
            thread.start()
        clock = RunClock()
        replay(reqs, lambda r: clock.now(), clock, on_dispatch=lambda r, t: late.append(t - r.arrival_time_ns))
    finally:
        stop.set()
        if thread:
            thread.join()
        sys.setswitchinterval(old)
    return lateness_stats(late)


def main() -> int:
    rows = [("do-nothing engine", None, SWITCH_INTERVAL_S)]
    for name, fn in (("python-busy engine", _python_engine), ("torch-cpu engine", _torch_engine)):
        rows += [(name, fn, 5e-3), (name, fn, SWITCH_INTERVAL_S)]
    ok = True
    print(f"replay at {RATE} requests/s, {N} requests; dispatch lateness (dispatch - scheduled)")
    for name, fn, interval in rows:
        s = measure(fn, interval)
        print(f"  {name:20s} switch {interval * 1e6:6.0f} us: p50 {s['p50_ns'] / 1e3:8.1f} us  p99 {s['p99_ns'] / 1e3:8.1f} us  max {s['max_ns'] / 1e3:8.1f} us")
        if fn is None:
            ok = s["p99_ns"] < 1_000_000
            print(f"dispatch lateness p99 (do-nothing engine): {s['p99_ns'] / 1e6:.3f} ms -> {'OK' if ok else 'FAIL'} (target < 1 ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
