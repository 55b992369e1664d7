"""The recorder's wait: each step is matched once, outside the lock, however many steps came before."""

from __future__ import annotations

import threading
import time

from gpu_simulate_test.backends.recorder import Recorder, RunClock, StepItem


def test_a_waiter_matches_each_step_once() -> None:
    """An engine thread records 300 steps of 64 requests while a waiter waits for the last: the waiter's match runs
    once a step (it used to rescan every step since ``since`` at every wake: 45,000 calls here, milliseconds of
    Python under the lock the engine records with, inside the steps vidur-profile timed)."""
    recorder = Recorder([], RunClock())
    calls = [0]
    items = [StepItem(i, 1, False) for i in range(64)]

    def match(step) -> bool:
        calls[0] += 1
        return step.items[0].request_id == -1

    def engine() -> None:
        for n in range(300):
            time.sleep(0.0005)
            first = [StepItem(-1, 1, False)] if n == 299 else []
            recorder.iteration(n, n + 1, first + items)

    thread = threading.Thread(target=engine)
    thread.start()
    matched, checked = recorder.wait_for_step(match, 0, 30.0)
    thread.join()
    assert matched and checked == 299 and calls[0] == 300
    # a later wait goes on from where the last one stopped and times out without a match
    assert recorder.wait_for_step(lambda s: False, 300, 0.05) == (False, 300) and calls[0] == 300
