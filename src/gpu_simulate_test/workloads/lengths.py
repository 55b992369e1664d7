"""Synthetic token-length distributions, each clipped to ``min``..``max`` (a registry keyed by name)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from gpu_simulate_test.config.workload import LengthDistConfig
from gpu_simulate_test.errors import InputError

# Draws n raw (float or int) lengths; :func:`sample_lengths` rounds and clips them.
Sampler = Callable[[LengthDistConfig, np.random.Generator, int], np.ndarray]


def _fixed(d: LengthDistConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.full(n, d.value, dtype=np.float64)


def _uniform(d: LengthDistConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(d.min, d.max, size=n, endpoint=True).astype(np.float64)


def _normal(d: LengthDistConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(d.mean, d.std, size=n)


def _lognormal(d: LengthDistConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    return d.median * np.exp(d.sigma * rng.standard_normal(n))


def _zipf(d: LengthDistConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """P(min + k) proportional to 1 / (k + 1)**theta, k = 0 .. max - min: short lengths are the common ones."""
    ranks = np.arange(1, d.max - d.min + 2, dtype=np.float64)
    p = ranks**-d.theta
    return d.min + rng.choice(len(ranks), size=n, p=p / p.sum()).astype(np.float64)


LENGTH_SAMPLERS: dict[str, Sampler] = {
    "fixed": _fixed,
    "uniform": _uniform,
    "normal": _normal,
    "lognormal": _lognormal,
    "zipf": _zipf,
}

# Which parameters each distribution needs to be positive (beyond min/max), for clear config errors.
_POSITIVE: dict[str, tuple[str, ...]] = {
    "fixed": ("value",),
    "uniform": (),
    "normal": ("std",),
    "lognormal": ("median", "sigma"),
    "zipf": ("theta",),
}


def check_bounds(d: LengthDistConfig, what: str) -> None:
    """``min``/``max`` must allow at least one token."""
    if d.min < 1 or d.max < d.min:
        raise InputError(
            f"workload.lengths.{what}: min={d.min}, max={d.max}; lengths need 1 <= min <= max (a request has at "
            "least one prompt token and decodes at least one token)"
        )


def sample_lengths(kind: str, d: LengthDistConfig, rng: np.random.Generator, n: int, what: str) -> np.ndarray:
    """``n`` integer lengths from distribution ``kind``, rounded and clipped to ``d.min``..``d.max``."""
    check_bounds(d, what)
    for key in _POSITIVE[kind]:
        if not getattr(d, key) > 0:
            raise InputError(f"workload.lengths.{what}.{key}={getattr(d, key)} must be > 0 for a {kind} distribution")
    raw = LENGTH_SAMPLERS[kind](d, rng, n)
    return np.clip(np.rint(raw), d.min, d.max).astype(np.int64)
