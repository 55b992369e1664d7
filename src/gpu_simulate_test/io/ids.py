"""Stable ids: content hashes for workloads and bundles, fresh time-stamped ids for runs."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime, timezone
from typing import Any

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def canonical_json(obj: Any) -> bytes:
    """One byte string per value, whatever the machine or dict order: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def short_hash(*parts: bytes, length: int = 12) -> str:
    """Hex prefix of the SHA-256 over ``parts`` (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:length]


def new_run_id(prefix: str) -> str:
    """A new id that sorts by creation time and never repeats: ``<prefix>-<UTC time>-<random>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def is_valid_id(value: str) -> bool:
    """Ids become directory names: letters, digits, ``.``, ``_`` and ``-`` only."""
    return bool(_ID_RE.match(value))
