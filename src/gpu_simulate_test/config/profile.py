"""The ``profile`` group: the grid and timing method of vidur-profile (one option per hardware)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from gpu_simulate_test.errors import InputError

SHAPE_SETS = ("fit", "validation", "test")


@dataclass
class ProfileConfig:
    """Operator grid and repetitions, and three disjoint sets of batch shapes fixed here, before a build: ``fit``
    (the only shapes anything is fitted on), ``validation`` (choose among ``variants``) and ``test`` (reported in the
    verdict, never fitted and never used to choose). ``held_out`` is the test set of bundles built before the three
    sets (read as ``test``; give one of the two).

    Shapes are ``prefill:<chunk>[@<kv>]``, ``decode:<batch>x<kv>`` or ``mixed:<chunk>[@<kv>]+<batch>x<kv>``; those a
    backend cannot schedule (more requests than its cap, mixed batches for one-at-a-time engines) are
    skipped and listed in the bundle's meta.
    """

    max_tokens: Optional[int] = None  # null: derived from the backend (chunk size or longest prompt)
    max_batch_size: Optional[int] = None  # null: backend.max_requests_per_batch
    max_kv_tokens: Optional[int] = None  # null: the model's max context in use
    min_kv_step: int = 64  # smallest non-zero KV size of the attention grid
    # KV sizes of the attention grid per octave above min_kv_step: 2 (powers of two and their 1.5x) up to 8 (steps
    # of an eighth). Vidur's random forest predicts between grid points nearly as the nearest one does, so a decode
    # at KV 2,350 on a grid of 2,048 and 3,072 is predicted near 2,048: memory-bound kernels need the dense grid.
    kv_points_per_octave: int = 2
    warmup_iters: int = 3
    repeat_iters: int = 10  # timed repeats per operator point (median and spread over them)
    calls_per_repeat: int = 5  # back-to-back calls per repeat, no sync in between (pipelined wall time)
    iteration_samples: int = 8  # timed iterations per whole-iteration shape and round
    iteration_rounds: int = 1  # passes over all fit and held-out shapes, interleaved; samples are pooled
    fit: List[str] = field(default_factory=list)  # shapes that calibrate the non-layer costs
    validation: List[str] = field(default_factory=list)  # shapes that choose among the variants
    test: List[str] = field(default_factory=list)  # e.g. "prefill:512", "decode:8x1024", "mixed:256+4x512"
    held_out: List[str] = field(default_factory=list)  # the test set of bundles built before validation/test existed
    # How the operator rows become a step time (vidur_ext/profiler/variants.py): operators | step | head | fold; validation
    # chooses among those listed. fold: what every bundle did before; its correction has no cap.
    variants: List[str] = field(default_factory=lambda: ["fold"])
    correction_cap_pct: float = 10.0  # the step variant's correction: at most this share of a fit shape's step
    # The bundle's verdict passes when the median |error| of Vidur's prediction on the test (held-out) shapes is at
    # most this (specs/profiling_root.md, "Verdict"); the published H100 bundles have 3.7% and 4.0%.
    held_out_tolerance_pct: float = 10.0

    def __post_init__(self) -> None:
        self.shape_sets()

    def shape_sets(self) -> dict[str, list[str]]:
        """``{"fit", "validation", "test"}``: the three sets, checked disjoint (``held_out`` read as ``test``)."""
        if self.test and self.held_out:
            raise InputError("profile.test and profile.held_out both list shapes; held_out is the test set of older "
                             "bundles: give one of the two (set profile.held_out=[])")
        sets = {"fit": list(self.fit), "validation": list(self.validation), "test": list(self.test or self.held_out)}
        seen: dict[str, str] = {}
        for name in SHAPE_SETS:
            for shape in sets[name]:
                key = "".join(str(shape).split())
                if key in seen:
                    where = name if seen[key] == name else f"{seen[key]} and profile.{name}"
                    raise InputError(f"batch shape {key!r} is listed twice (profile.{where}); the fit, validation and "
                                     "test sets must be disjoint: a shape that is fitted or chooses cannot test")
                seen[key] = name
        return sets
