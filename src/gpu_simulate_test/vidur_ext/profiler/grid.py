"""The grid a bundle covers, derived from model, backend and profile configs (explicit limits win)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.limits import resolve_limits
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.profile import ProfileConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.workloads.load import Workload


def pow2_at_least(value: int, floor: int = 1) -> int:
    """The smallest power of two times ``floor`` that is >= ``value``: sizes that round up this way are shared by
    similar workloads (a bundle's grid, a predictor's cache)."""
    out = floor
    while out < value:
        out *= 2
    return out


def ladder(top: int, start: int = 1, per_octave: int = 2) -> list[int]:
    """``start``, then ``per_octave`` points in every octave (2: powers of two and their 1.5x; 8: steps of an
    eighth) up to ``top``; ``top`` itself always included."""
    out = {top}
    p = 1
    while p <= top:
        for v in sorted({p + p * i // per_octave for i in range(per_octave)}):
            if start <= v <= top:
                out.add(v)
        p *= 2
    return sorted(v for v in out if v >= start)


@dataclass(frozen=True)
class Grid:
    """Sample points of every profiled table, and the limits they imply."""

    limits: GridLimits
    token_points: list[int]  # mlp.csv num_tokens
    prefill_points: list[tuple[int, int]]  # (chunk, kv cached before it)
    decode_points: list[tuple[int, int]]  # (batch, kv cached)


def build_grid(model: ModelConfig, backend: BackendConfig, profile: ProfileConfig) -> Grid:
    """Cover what the backend can schedule on prompts up to the context in use: its token budget (chunk size, or
    whole prompts), its batch cap, that context; ``profile``'s own limits win."""
    max_kv = profile.max_kv_tokens or model.max_position_embeddings
    if max_kv < 1:
        raise InputError(f"profile.max_kv_tokens resolves to {max_kv}; it must be >= 1")
    if max_kv > model.max_position_embeddings:
        raise InputError(
            f"profile.max_kv_tokens={max_kv} exceeds model.max_position_embeddings={model.max_position_embeddings} of {model.name}"
        )
    backend_limits = resolve_limits(backend, max_kv)
    tokens = profile.max_tokens or backend_limits.token_budget
    batch = profile.max_batch_size or backend_limits.batch_cap
    for name, v in (("max_tokens", tokens), ("max_batch_size", batch)):
        if v < 1:
            raise InputError(f"profile.{name} resolves to {v}; it must be >= 1")
    chunk = min(tokens, max_kv)
    limits = GridLimits(tokens_per_iteration=tokens, prefill_chunk=chunk, batch_size=batch, request_tokens=max_kv,
                        block_size=backend_limits.block_size)
    if profile.kv_points_per_octave < 1:
        raise InputError(f"profile.kv_points_per_octave={profile.kv_points_per_octave}; it must be >= 1")
    kv = [0, *ladder(max_kv, start=profile.min_kv_step, per_octave=profile.kv_points_per_octave)]
    # Each chunk and decode also at the very top of the context (Vidur's random forest cannot extrapolate: a KV
    # beyond the last point is predicted at that point)
    prefill = [(c, k) for c in ladder(chunk, start=8) for k in sorted({*kv, max_kv - c}) if c + k <= max_kv]
    decode = [(b, k) for b in ladder(batch) for k in sorted({*kv, max_kv - 1}) if 1 <= k < max_kv]
    return Grid(limits, ladder(tokens), prefill, decode)


def _shape_needs(profile: ProfileConfig, backend: BackendConfig) -> tuple[int, int]:
    """The most tokens of one iteration and the longest context among the fit and held-out shapes the backend can
    schedule (those the build measures and Vidur then predicts: the grid must hold them too)."""
    shapes = [BatchShape.parse(s, f"profile.{role}") for role in ("fit", "held_out") for s in getattr(profile, role)]
    timer = StepTimer(backend, shapes, profile.iteration_samples)
    measured = [s for s in shapes if timer.unsupported(s) is None]
    return (max((s.num_tokens for s in measured), default=1),
            max((max(s.prefill_kv + s.prefill_tokens, s.decode_kv + 1) for s in measured), default=1))


def size_profile(profile: ProfileConfig, model: ModelConfig, backend: BackendConfig, workload: Workload) -> ProfileConfig:
    """``profile`` with the limits it leaves null sized to cover ``workload``, each rounded up to a power of two so
    that the points of a sweep (same lengths, other rates or counts) share one bundle.

    ``max_kv_tokens``: the workload's longest request; ``max_tokens``: the most tokens one iteration holds on it (the
    backend's limits on the workload). Both also cover the profile's own fit and held-out shapes that the backend can
    schedule (:func:`_shape_needs`), which the build predicts with Vidur. A size that reaches what null means anyway
    (the model's context, the backend's token budget) stays null, so the bundle keeps the id it had without a
    workload. Limits the profile sets are kept: the caller checks that they cover the workload
    (:meth:`GridLimits.require_run`). ``max_batch_size`` stays as it is.
    """
    sized = profile
    shape_tokens, shape_context = _shape_needs(profile, backend)
    if profile.max_kv_tokens is None:
        kv = pow2_at_least(max(workload.max_context, shape_context))
        if kv < model.max_position_embeddings:
            sized = replace(sized, max_kv_tokens=kv)
    if profile.max_tokens is None:
        need = max(resolve_limits(backend, workload.max_prefill, len(workload.requests)).tokens_per_iteration, shape_tokens)
        null_means = resolve_limits(backend, sized.max_kv_tokens or model.max_position_embeddings).token_budget
        tokens = pow2_at_least(need)
        if tokens < null_means or null_means < need:
            sized = replace(sized, max_tokens=tokens)
    return sized
