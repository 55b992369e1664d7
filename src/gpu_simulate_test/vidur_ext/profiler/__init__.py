"""vidur-profile: time the model's operators and whole iterations on this hardware, the way a backend runs them,
and write a profiling root that Vidur's own execution-time predictor reads (see ``specs/profiling_root.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_simulate_test.config.apps import VidurProfileAppConfig

if TYPE_CHECKING:
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult


def run_vidur_profile(app: VidurProfileAppConfig) -> "BundleResult":
    """The app's library entry: build (or find, by id) the bundle for ``app``; its directory and held-out check."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import build_bundle
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    return build_bundle(app, vidur_predict(app))
