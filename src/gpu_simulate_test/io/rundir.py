"""Atomic output directories: built in a hidden sibling, renamed into place only when complete.

A failed or interrupted stage leaves nothing under the final name; an existing directory is
never replaced unless the caller passes ``overwrite=True``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpu_simulate_test.errors import EnvironmentUnavailableError, OutputExistsError


def _make_parent(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentUnavailableError(
            f"cannot create output directory {parent}: {exc.strerror}; choose a writable paths.root"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise EnvironmentUnavailableError(f"output directory {parent} is not writable; choose a writable paths.root")


@contextmanager
def atomic_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on normal exit it becomes ``final``, on any exception it is removed."""
    final = Path(final)
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} exists already; pass overwrite=true to replace it, or choose another id")
    _make_parent(final.parent)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = final.parent / f".{final.name}.partial-{token}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputExistsError(f"{final} appeared while this stage ran; nothing was written over it")
        trash = final.parent / f".{final.name}.old-{token}"
        final.rename(trash)
        tmp.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(final)
