"""The ``profile`` group: the grid and timing method of vidur-profile (one option per hardware)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class ProfileConfig:
    """Operator grid and repetitions; held-out shapes are fixed here, before measuring, and never fitted.

    Shapes are ``prefill:<chunk>``, ``decode:<batch>x<kv>`` or ``mixed:<chunk>+<batch>x<kv>``; those a
    backend cannot schedule (more requests than its cap, mixed batches for one-at-a-time engines) are
    skipped and listed in the bundle's meta.
    """

    max_tokens: Optional[int] = None  # null: derived from the backend (chunk size or longest prompt)
    max_batch_size: Optional[int] = None  # null: backend.max_requests_per_batch
    max_kv_tokens: Optional[int] = None  # null: the model's max context in use
    min_kv_step: int = 64  # smallest non-zero KV size of the attention grid
    warmup_iters: int = 3
    repeat_iters: int = 10  # timed repeats per operator point (median and spread over them)
    calls_per_repeat: int = 5  # back-to-back calls per repeat, no sync in between (pipelined wall time)
    iteration_samples: int = 8  # timed iterations per whole-iteration shape and round
    iteration_rounds: int = 1  # passes over all fit and held-out shapes, interleaved; samples are pooled
    fit: List[str] = field(default_factory=list)  # shapes that calibrate the non-layer costs
    held_out: List[str] = field(default_factory=list)  # e.g. "prefill:512", "decode:8x1024", "mixed:256+4x512"
    # The bundle's verdict passes when the median |error| of Vidur's prediction on the held-out shapes is at most this
    # (specs/profiling_root.md, "Verdict"); the published H100 bundles have 3.7% and 4.0%.
    held_out_tolerance_pct: float = 10.0
