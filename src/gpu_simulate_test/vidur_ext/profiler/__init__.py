"""vidur-profile: time the model's operators and whole iterations on this hardware, the way a backend runs them,
and write a profiling root that Vidur's own execution-time predictor reads (see ``specs/profiling_root.md``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.config.limits import resolve_limits
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid, size_profile
from gpu_simulate_test.workloads.load import load_workload

if TYPE_CHECKING:
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult


MODES = ("measure", "import", "rederive")


def sized_for_workload(app: VidurProfileAppConfig) -> VidurProfileAppConfig:
    """``app`` with its grid sized to ``app.workload_id`` (when given: :func:`.grid.size_profile`), after checking that
    the grid covers that workload; what the bundle id and the build then use."""
    if not app.workload_id:
        return app
    workload = load_workload(Path(app.paths.workloads), app.workload_id)
    profile = size_profile(app.profile, app.model, app.backend, workload)
    limits = resolve_limits(app.backend, workload.max_prefill, len(workload.requests))
    knobs = {k: getattr(app.profile, k) for k in ("max_tokens", "max_kv_tokens", "max_batch_size")}
    what = "the grid of " + ", ".join(f"profile.{k}={'null' if v is None else v}" for k, v in knobs.items()) + \
        " (null: sized to the workload)"
    build_grid(app.model, app.backend, profile).limits.require_run(what, limits, workload.max_context)
    return replace(app, profile=profile)


def run_vidur_profile(app: VidurProfileAppConfig) -> "BundleResult":
    """The app's library entry: build (``mode=measure``), import (``mode=import``) or derive again from another build's
    measurements (``mode=rederive``, ``source``: that bundle's directory or its id under ``paths.profiling``) the
    bundle for ``app``, or find it by id; its directory and held-out check."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult, build_bundle, rederive_bundle

    if app.mode not in MODES:
        raise InputError(f"mode={app.mode!r} is not one of {list(MODES)}")
    if app.mode == "import":
        import pandas as pd

        from gpu_simulate_test.io.schemas import HELD_OUT_CHECK
        from gpu_simulate_test.vidur_ext.profiler.vidur_import import import_bundle
        from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
        from gpu_simulate_test.vidur_ext.verdict import bundle_verdict

        path, reused = import_bundle(app)
        verdict = bundle_verdict(load_profiling_root(path).meta)
        return BundleResult(path, reused, pd.DataFrame(columns=HELD_OUT_CHECK.column_names), verdict, imported=True)
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    app = sized_for_workload(app)
    if app.mode == "rederive":
        if not app.source:
            raise InputError("mode=rederive needs source=<a bundle directory, or its id under paths.profiling>")
        source = Path(app.source) if Path(app.source).is_dir() else Path(app.paths.profiling) / app.source
        if not source.is_dir():
            raise InputError(f"source={app.source}: no bundle there, nor under paths.profiling ({app.paths.profiling})")
        return rederive_bundle(app, source, vidur_predict(app))
    return build_bundle(app, vidur_predict(app))
