"""One measurement at a time per device: an exclusive ``flock`` on a lock file per device.

The lock files live outside every artifact root (``$GST_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/gpu-simulate-test/locks``,
else ``~/.cache/gpu-simulate-test/locks``), so two runs with different ``paths.root`` still take turns. A waiter logs
once whom it waits for (the holder writes its pid and command line into the file) and gives up after its timeout
with one clear error. The kernel drops a ``flock`` when its holder exits, however it exits, so a crashed
measurement never leaves the device locked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpu_simulate_test.errors import EnvironmentUnavailableError

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "GST_LOCK_DIR"
POLL_S = 0.5


def lock_dir() -> Path:
    """Where the lock files are: shared by every artifact root of this user (see the module docstring)."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime) / "gpu-simulate-test" / "locks"
    return Path.home() / ".cache" / "gpu-simulate-test" / "locks"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return text or "another process"


@contextmanager
def device_lock(device: str, timeout_s: float, what: str = "") -> Iterator[Path]:
    """Hold the lock of ``device`` (``cpu`` or a GPU's name) for the ``with`` block; wait at most ``timeout_s``."""
    directory = lock_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentUnavailableError(
            f"cannot create the device lock directory {directory}: {exc.strerror}; set {LOCK_DIR_ENV} to a writable directory"
        ) from exc
    path = directory / f"{device}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + float(timeout_s)
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise EnvironmentUnavailableError(
                        f"device {device} is still in use by {holder} after {float(timeout_s):g} s "
                        f"(lock {path}); wait for that measurement to end, or raise device_lock_timeout_s"
                    ) from None
                if not waited:
                    log.warning("device %s is in use by %s; waiting for it (at most %g s, lock %s)",
                                device, holder, float(timeout_s), path)
                    waited = True
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        if waited:
            log.warning("device %s is free: %s goes ahead", device, what or "this measurement")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}){f': {what}' if what else ''}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
