"""Open-loop replay: hand each request to the engine at its scheduled time and measure how late that was.

The dispatcher is the main thread; every engine runs its loop in a background thread. Under the GIL a
waiting thread gets the interpreter back only after the running thread's switch interval (5 ms by
default), so real-bench lowers it for the measured run, and for the same reason pauses the cyclic garbage collector
(``backends.conditions``). The numbers behind this choice (and against a dispatcher polled by the engine loop or a
separate process) are in ``specs/run.md``, section "Dispatch and the GIL".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Optional

import numpy as np

from gpu_simulate_test.backends.recorder import RunClock, wait_until
from gpu_simulate_test.workloads.load import WorkloadRequest

IDLE_MIN_NS = 20_000_000  # on_idle runs only when the next arrival is at least this far away


def replay(
    requests: Iterable[WorkloadRequest],
    submit: Callable[[WorkloadRequest], int],
    clock: RunClock,
    *,
    on_dispatch: Optional[Callable[[WorkloadRequest, int], None]] = None,
    on_idle: Optional[Callable[[], None]] = None,
) -> None:
    """Open loop: at each request's ``arrival_time_ns`` call ``submit`` (which returns the dispatch time).

    Earlier requests are never waited for; ``on_dispatch`` sees each (request, dispatch_ns). ``on_idle``
    (e.g. redrawing a progress bar) runs only ahead of a wait of at least :data:`IDLE_MIN_NS`, so it
    never delays a dispatch.
    """
    for req in requests:
        if on_idle is not None and req.arrival_time_ns - clock.now() >= IDLE_MIN_NS:
            on_idle()
        wait_until(clock, req.arrival_time_ns)
        dispatched = submit(req)
        if on_dispatch is not None:
            on_dispatch(req, dispatched)


def lateness_stats(lateness_ns: Sequence[int]) -> dict[str, Optional[float]]:
    """p50/p99/max/mean of dispatch - scheduled arrival, in ns (None when nothing was dispatched)."""
    if len(lateness_ns) == 0:
        return {"count": 0, "p50_ns": None, "p99_ns": None, "max_ns": None, "mean_ns": None}
    arr = np.asarray(lateness_ns, dtype=np.int64)
    return {
        "count": int(arr.size),
        "p50_ns": float(np.percentile(arr, 50)),
        "p99_ns": float(np.percentile(arr, 99)),
        "max_ns": int(arr.max()),
        "mean_ns": float(arr.mean()),
    }
