"""Stage outputs: the names of the files every stage shares, and one way to claim and write an output directory.

A stage claims its directory (:func:`stage_output`: the id given or its default, checked, and nothing there unless
``overwrite``) before it does any work, and writes it atomically (:func:`atomic_dir`: built in a hidden sibling,
renamed into place only when complete). A failed or interrupted stage leaves nothing under the final name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, OutputExistsError
from gpu_simulate_test.io.ids import is_valid_id

# The meta JSON of each kind of output directory, and the one-page report of a comparison or a sweep.
WORKLOAD_META = "workload_meta.json"
RUN_META = "run_meta.json"
PROFILE_META = "profile_meta.json"
COMPARISON_META = "comparison_meta.json"
SWEEP_META = "sweep_meta.json"
SUMMARY = "summary.md"


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


@dataclass(frozen=True)
class StageOutput:
    """A claimed output directory: its id is valid and nothing is there (or ``overwrite`` allows replacing it)."""

    path: Path
    overwrite: bool

    @property
    def id(self) -> str:
        return self.path.name

    def write(self) -> AbstractContextManager[Path]:
        """The atomic directory to write into (see :func:`atomic_dir`)."""
        return atomic_dir(self.path, overwrite=self.overwrite)


def stage_output(root: Path | str, given_id: Optional[str], default_id: Callable[[], str], *, overwrite: bool,
                 key: str = "run_id") -> StageOutput:
    """Claim ``<root>/<id>``: ``given_id`` (the app's ``key``) or else ``default_id()``; a bad id or an existing
    directory (without ``overwrite``) is refused here, before the stage does any work."""
    out_id = str(given_id) if given_id else default_id()
    if not is_valid_id(out_id):
        raise InputError(f"{key}={out_id!r} is not a valid id: use letters, digits, '.', '_' and '-' only")
    final = Path(root) / out_id
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} exists already; pass overwrite=true to replace it, or choose another {key}")
    return StageOutput(final, overwrite)


ARCHIVE_MODES = {".tar.gz": "w:gz", ".tar.xz": "w:xz"}  # xz: about half gzip's size for a real run's tables


def write_archive(dest: Path, root: Path, members: Iterable[Path]) -> Path:
    """``members`` (files or folders under ``root``) into the tar ``dest``, compressed as its name ends
    (``ARCHIVE_MODES``), each at its path under ``root``, so that unpacking it into another root puts every member
    back in its place."""
    mode = next((m for suffix, m in ARCHIVE_MODES.items() if dest.name.endswith(suffix)), None)
    if mode is None:
        raise ValueError(f"{dest}: an archive's name ends in one of {sorted(ARCHIVE_MODES)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    base = Path(root).resolve()
    with tarfile.open(dest, mode) as tar:
        for m in members:
            tar.add(m, arcname=str(Path(m).resolve().relative_to(base)))
    return dest
