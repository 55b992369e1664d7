"""vidur-profile: time the model's operators and whole iterations on this hardware, the way a backend runs them,
and write a profiling root that Vidur's own execution-time predictor reads (see ``specs/profiling_root.md``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def run_vidur_profile(cfg: DictConfig) -> Path:
    """The app's library entry: build (or find, by id) the bundle for ``cfg`` and return its directory."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import build_bundle
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    app = OmegaConf.to_object(cfg)
    return build_bundle(app, vidur_predict(app)).path
