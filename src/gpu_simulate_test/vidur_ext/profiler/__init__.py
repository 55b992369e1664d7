"""vidur-profile: time the model's operators and whole iterations on this hardware, the way a backend runs them,
and write a profiling root that Vidur's own execution-time predictor reads (see ``specs/profiling_root.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.errors import InputError

if TYPE_CHECKING:
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult


MODES = ("measure", "import")


def run_vidur_profile(app: VidurProfileAppConfig) -> "BundleResult":
    """The app's library entry: build (``mode=measure``) or import (``mode=import``) the bundle for ``app``, or find
    it by id; its directory and held-out check."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult, build_bundle

    if app.mode not in MODES:
        raise InputError(f"mode={app.mode!r} is not one of {list(MODES)}")
    if app.mode == "import":
        import pandas as pd

        from gpu_simulate_test.io.schemas import HELD_OUT_CHECK
        from gpu_simulate_test.vidur_ext.profiler.vidur_import import import_bundle

        path, reused = import_bundle(app)
        return BundleResult(path, reused, pd.DataFrame(columns=HELD_OUT_CHECK.column_names), imported=True)
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    return build_bundle(app, vidur_predict(app))
