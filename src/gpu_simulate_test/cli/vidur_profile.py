"""vidur-profile: measure a model's operators and whole iterations on this hardware, the way a backend runs
them, and write a profiling root for Vidur (``specs/profiling_root.md``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from gpu_simulate_test.cli._app import CONFIG_DIR, run_app
from gpu_simulate_test.config.apps import VidurProfileAppConfig


def profile(cfg: DictConfig) -> None:
    from gpu_simulate_test.vidur_ext.profiler.bundle import build_bundle
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    app: VidurProfileAppConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    result = build_bundle(app, vidur_predict(app))
    print(f"{'existing bundle (reused, not rebuilt)' if result.reused else 'bundle written'}: {result.path}")
    if len(result.check):
        print(result.check.assign(measured_ms=result.check.measured_ns / 1e6, predicted_ms=result.check.predicted_ns / 1e6)
              [["shape", "measured_ms", "predicted_ms", "error_pct"]].to_string(index=False, float_format="%.3f"))
        print(f"median |error| on held-out shapes: {result.check.error_pct.abs().median():.1f}%")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="vidur_profile")
def main(cfg: DictConfig) -> None:
    run_app(profile, cfg)


if __name__ == "__main__":
    main()
