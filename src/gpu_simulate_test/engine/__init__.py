"""``native``: a lean serving engine (paged KV cache, Vidur's scheduling policies, Triton kernels, CUDA graphs).

It stands on its own: torch and triton only, nothing from ``real_bench``, ``vidur_ext`` or ``analysis``, so that
real-bench (``backend=native``) and vidur-profile drive the very same code.

Layout (one concern a file):
    config.py        EngineConfig: the model's shape and every engine knob, one name each
    sequence.py      Sequence (one request's tokens, KV blocks and progress) and ScheduledBatch (one iteration)
    block_manager.py the paged KV pool's block ledger
    scheduler.py     the policies (``sarathi``, ``vllm``) that form each iteration's batch, as vidur-sim simulates them
    kernels/         Triton kernels, each beside an independent plain-torch reference
    model.py         the dense Qwen3 model over packed tokens and the paged cache
    runner.py        inputs, CUDA graphs for decode batches, greedy sampling
    memory.py        how many KV blocks fit (vLLM's gpu_memory_utilization rule)
    engine.py        the step loop: schedule, run, sample, log the iteration
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

_measured_with: Optional[str] = None  # the engine an archived result was measured with (``measured_with``)


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """A short hash of the engine's source (every ``.py`` under this package, by relative path): what a native
    bundle, point or capacity was measured with is part of its id, so that a changed engine never reuses them."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def id_basis(backend: str) -> dict[str, str]:
    """What ids of a backend's measurements add to their config: the engine's source for ``native`` (whose kernels
    and step the project itself changes), nothing for the others (their code is a pinned package)."""
    return {"engine_code": _measured_with or source_fingerprint()} if backend == "native" else {}


def pinned_code() -> Optional[str]:
    """The engine ``measured_with`` names now (None: this tree's): a measurement refuses to run under it."""
    return _measured_with


@contextmanager
def measured_with(engine_code: str) -> Iterator[None]:
    """Ids computed inside name the engine ``engine_code`` (a ``source_fingerprint`` of another tree) instead of
    this one: a published result's archives were measured with the engine of their day, and republishing them must
    find them by the keys they were filed under, whatever the engine has become since. Never around a measurement."""
    global _measured_with
    old, _measured_with = _measured_with, engine_code
    try:
        yield
    finally:
        _measured_with = old
