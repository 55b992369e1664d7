"""A host-speed index from outside the engine's process: a fixed piece of Python and numpy work (shaped like the
engine's packing: list building and small array writes, ~0.1-0.3 ms) timed every 50 ms in a process of its own (no
GIL shared with the engine), each sample's start on the system-wide monotonic clock (``perf_counter_ns``, the clock
the runs' timelines use). Does it follow the drift of the engine's own host work?

    python studies/2026-12-03-host-state/speed_sampler.py OUT.csv &   # stop it with SIGTERM; it writes OUT.csv then
"""

from __future__ import annotations

import signal
import sys
import time

import numpy as np

PERIOD_S = 0.05


def work(h: np.ndarray, ids: list[int]) -> None:
    for _ in range(8):
        rows = []
        for i in range(64):
            rows.append(i * 3 + 1)
        h[:512] = ids
        h[512:576] = rows
        h[576:640] = np.arange(64, dtype=np.int32) * 16 + 5


def main() -> int:
    out = sys.argv[1]
    h, ids = np.empty(4096, dtype=np.int32), list(range(512))
    samples: list[tuple[int, int]] = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        t0 = time.perf_counter_ns()
        work(h, ids)
        samples.append((t0, time.perf_counter_ns() - t0))
        time.sleep(PERIOD_S)
    with open(out, "w") as f:
        f.write("t_ns,work_ns\n")
        f.writelines(f"{t},{d}\n" for t, d in samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
