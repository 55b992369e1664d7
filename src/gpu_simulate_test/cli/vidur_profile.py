"""vidur-profile: measure a model's operators and whole iterations on this hardware, the way a backend runs
them, and write a profiling root for Vidur (``specs/profiling_root.md``)."""

from __future__ import annotations

from typing import Any

from gpu_simulate_test.cli._app import hydra_app
from gpu_simulate_test.config.apps import VidurProfileAppConfig


def _run(app: VidurProfileAppConfig) -> Any:
    from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile  # Vidur takes seconds to import

    return run_vidur_profile(app)


def _report(result: Any) -> str:
    """Where the bundle is, its held-out check shape by shape, and its verdict."""
    lines = [f"{'existing bundle (reused, not rebuilt)' if result.reused else 'bundle written'}: {result.path}"]
    if result.imported:
        lines.append("imported from Vidur's own files: no held-out check is possible without the hardware")
    check = result.check
    if len(check):
        table = check.assign(measured_ms=check.measured_ns / 1e6, predicted_ms=check.predicted_ns / 1e6)
        lines.append(table[["shape", "measured_ms", "predicted_ms", "error_pct"]].to_string(index=False, float_format="%.3f"))
        lines.append(f"median |error| on held-out shapes: {check.error_pct.abs().median():.1f}%")
    lines.append(f"verdict {result.verdict.line()}")
    if not result.verdict.accepted:
        lines.append("vidur-sim and experiment use it only with accept_bundle=true")
    return "\n".join(lines)


main = hydra_app("vidur_profile", _run, _report)

if __name__ == "__main__":
    main()
