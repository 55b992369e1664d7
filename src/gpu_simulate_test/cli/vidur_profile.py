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
    """Where the bundle is, its test (held-out) check shape by shape beside the two baselines, and its verdict."""
    lines = [f"{'existing bundle (reused, not rebuilt)' if result.reused else 'bundle written'}: {result.path}"]
    if result.imported:
        lines.append("imported from Vidur's own files: no held-out check is possible without the hardware")
    check = result.check
    if len(check):
        cols = {"measured_ms": "measured_ns", "bundle_ms": "predicted_ns", "constant_ms": "constant_ns", "linear_ms": "linear_ns"}
        table = check.assign(**{k: check[v] / 1e6 for k, v in cols.items() if v in check.columns})
        shown = ["shape", *(k for k, v in cols.items() if v in check.columns), "error_pct",
                 *(c for c in ("constant_error_pct", "linear_error_pct") if c in check.columns)]
        lines.append(table[shown].to_string(index=False, float_format="%.3f"))
        medians = [f"bundle {check.error_pct.abs().median():.1f}%"] + [
            f"{c.split('_')[0]} {check[c].abs().median():.1f}%" for c in ("constant_error_pct", "linear_error_pct")
            if c in check.columns]
        lines.append("median |error| on the test (held-out) shapes: " + ", ".join(medians))
    lines.append(f"verdict {result.verdict.line()}")
    if not result.verdict.accepted:
        lines.append("vidur-sim and experiment use it only with accept_bundle=true")
    return "\n".join(lines)


main = hydra_app("vidur_profile", _run, _report)

if __name__ == "__main__":
    main()
