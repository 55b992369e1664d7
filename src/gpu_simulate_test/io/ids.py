"""Stable ids: content hashes for workloads and bundles, fresh time-stamped ids for runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import typing
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Dataclass field metadata of a config field that never enters an id: it says where a value came from or how
# prompt ids are drawn, not what is measured (``dataclasses.field(..., metadata=NOT_IN_IDS)``).
NOT_IN_IDS = {"in_ids": False}


def canonical_json(obj: Any) -> bytes:
    """One byte string per value, whatever the machine or dict order: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def without_defaults(value: Any, schema: type) -> Any:
    """``value`` (the plain dict of a ``schema`` dataclass) without the fields left at their defaults, recursively.

    Ids hash this form, so adding a config field with a default leaves every existing id unchanged; a field
    whose default is MISSING (``???``) is always kept, one marked :data:`NOT_IN_IDS` never.
    """
    if not (dataclasses.is_dataclass(schema) and isinstance(value, Mapping)):
        return value
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    out: dict[str, Any] = {}
    for key, item in value.items():
        f = fields.get(key)
        if f is None:
            out[key] = item
            continue
        if f.metadata.get("in_ids") is False:
            continue
        sub = hints.get(key)
        if dataclasses.is_dataclass(sub):
            reduced = without_defaults(item, sub)
            if reduced != {}:
                out[key] = reduced
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if default == "???" or item != default:
            out[key] = item
    return out


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks: what a file's content contributes to an id, wherever it lies."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def short_hash(*parts: bytes, length: int = 12) -> str:
    """Hex prefix of the SHA-256 over ``parts`` (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:length]


def content_hash(paths: typing.Iterable[Path], length: int = 16) -> str:
    """A fingerprint of the files' bytes (in the order given): what a stage read, so that its output is reused only
    while those files are unchanged."""
    return short_hash(*(Path(p).read_bytes() for p in paths), length=length)


def new_run_id(prefix: str) -> str:
    """A new id that sorts by creation time and never repeats: ``<prefix>-<UTC time>-<random>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def is_valid_id(value: str) -> bool:
    """Ids become directory names: letters, digits, ``.``, ``_`` and ``-`` only."""
    return bool(_ID_RE.match(value))
