"""The conditions a measured run has: real-bench's run, and the steps vidur-profile times (so that a step's host
share is the one the runs it predicts have).

The dispatcher is the main thread; every engine runs its loop in a background thread. Under the GIL a waiting
thread gets the interpreter back only after the running thread's switch interval (5 ms by default), so a measured run
lowers it to :data:`SWITCH_INTERVAL_S` (``specs/run.md``, section "Dispatch and the GIL"); for the same reason the
objects that exist when it starts are frozen and the cyclic garbage collector paused (:func:`gc_paused`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL_S = 1e-4  # 100 us: dispatch p99 stays well under 1 ms next to a busy engine thread


@contextmanager
def switch_interval(seconds: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """Lower the GIL switch interval for the measured run only."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during the measured run: collect and freeze what exists, then disable.

    A collection stops every thread of the process, the dispatcher included; a full one walks every object the
    process holds (~95k once real-bench's imports are in: ~30-100 ms), and one came every few seconds at 500
    requests/s of the openai backend, making dispatches and token stamps that late (``specs/run.md``). Frozen objects
    are never scanned again, and the young collections of such a run found no garbage to free. Reference counting
    still frees everything that is not in a cycle; what cycles a run leaves are collected when it ends.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


@contextmanager
def measured_run() -> Iterator[None]:
    """Both conditions at once: real-bench's measured run, and every step vidur-profile times."""
    with switch_interval(), gc_paused():
        yield
