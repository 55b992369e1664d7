"""The ``profile`` group: the grid and timing method of vidur-profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class ProfileConfig:
    """Operator grid and repetitions; held-out shapes are fixed here, before measuring, and never fitted."""

    max_tokens: Optional[int] = None  # null: derived from the backend (chunk size or longest prompt)
    max_batch_size: Optional[int] = None  # null: backend.max_requests_per_batch
    max_kv_tokens: Optional[int] = None  # null: the model's max context in use
    warmup_iters: int = 3
    repeat_iters: int = 10
    held_out: List[str] = field(default_factory=list)  # e.g. "prefill:512", "decode:8x1024", "mixed:256+4x512"
