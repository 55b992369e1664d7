"""A progress bar for a measured run that never competes with a dispatch.

Drawing takes the GIL for a millisecond or so, so it happens only where it cannot make a request late:
from the dispatcher while the next arrival is far away (``replay``'s ``on_idle``), and, once every
request is dispatched, from a background thread until the engine drains.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MIN_REDRAW_S = 0.25


class RunProgress:
    """Requests finished out of the workload's, redrawn at most every :data:`MIN_REDRAW_S`."""

    def __init__(self, total: int, finished: Callable[[], int]) -> None:
        self._finished = finished
        self._last = 0.0
        self._bar = Progress(
            TextColumn("real-bench"), BarColumn(), MofNCompleteColumn(), TextColumn("requests finished"),
            TimeElapsedColumn(), console=Console(stderr=True), auto_refresh=False,
        )
        self._task = self._bar.add_task("run", total=total)

    def redraw(self) -> None:
        now = time.monotonic()
        if now - self._last < MIN_REDRAW_S:
            return
        self._last = now
        self._bar.update(self._task, completed=self._finished())
        self._bar.refresh()

    @contextmanager
    def draining(self) -> Iterator[None]:
        """While the engine finishes what was dispatched, redraw from a background thread."""
        done = threading.Event()

        def loop() -> None:
            while not done.wait(MIN_REDRAW_S):
                self.redraw()

        thread = threading.Thread(target=loop, name="real-bench-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def __enter__(self) -> RunProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._last = 0.0
        self.redraw()
        self._bar.stop()
