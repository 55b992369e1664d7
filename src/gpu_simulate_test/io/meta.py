"""The meta JSON that every output directory carries: what it is, what it was made from, and where."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional

from gpu_simulate_test.errors import ArtifactError

SCHEMA_VERSION = 1
STATUSES = ("complete", "incomplete")
META_KEYS = ("schema_version", "kind", "id", "status", "inputs", "config", "provenance")
_PACKAGES = ("gpu-simulate-test", "torch", "transformers", "vidur", "hydra-core", "omegaconf", "numpy", "pandas")


def git_commit() -> Optional[str]:
    """The checkout's commit (``+dirty`` when it has uncommitted changes), or None outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha


def package_versions() -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def accelerator_name() -> str:
    """The GPU this process uses, when torch is loaded and sees one; else ``cpu``. Never imports torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return str(torch.cuda.get_device_name(torch.cuda.current_device()))
        except Exception:  # noqa: BLE001 - a broken CUDA setup still leaves a usable meta
            return "unknown"
    return "cpu"


def provenance() -> dict[str, Any]:
    """Where and when: kept in its own block so that it never enters a content hash."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "accelerator": accelerator_name(),
    }


def build_meta(
    *,
    kind: str,
    id: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
    status: str = "complete",
    **extra: Any,
) -> dict[str, Any]:
    """The common meta block plus stage-specific keys in ``extra``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "id": id,
        "status": status,
        "inputs": dict(inputs),
        "config": dict(config),
        "provenance": provenance(),
    }
    meta.update(extra)
    return meta


def write_json(path: Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_meta(path: Path, kind: Optional[str] = None) -> dict[str, Any]:
    """Read and check a meta JSON; ``kind`` (if given) must match, so a wrong directory is caught early."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; the directory was not written by this tool or is incomplete")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}); regenerate it") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ArtifactError(f"{path}: missing keys {missing}; regenerate it with this version of the tool")
    if kind is not None and meta["kind"] != kind:
        raise ArtifactError(f"{path}: is a {meta['kind']!r} directory, expected {kind!r}; check the id or path you gave")
    if meta["status"] not in STATUSES:
        raise ArtifactError(f"{path}: status {meta['status']!r} is not one of {STATUSES}")
    return meta
