"""``make demo``: the whole pipeline on the embedded default, on the CPU, for both HF backends and the native engine.

It composes the ``experiment`` app's config for each backend, runs (or reuses) every stage, then
prints each comparison's headline table, its bundle's verdict and the path of its ``summary.md``. The CPU bundle
is built in the same run on whatever host runs the demo, so the demo accepts it explicitly (``accept_bundle=true``)
whatever its verdict, and says what that verdict is.

    python -m gpu_simulate_test.cli.demo [experiment overrides ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.cli._app import INTERRUPTED, fail
from gpu_simulate_test.errors import GstError, RunInterrupted
from gpu_simulate_test.experiment import run_experiment
from gpu_simulate_test.io.outputs import SUMMARY

BACKENDS = ("hf-generate", "hf-continuous", "native")
# The demo workload holds 16 requests, so a batch cap of 16 schedules exactly what native's 128 would; it keeps the
# CPU profile grid (decode batches up to the cap) to what the demo can meet.
OVERRIDES = {"native": ("backend.max_requests_per_batch=16",)}


def run_demo(overrides: list[str]) -> list[Path]:
    """Run the pipeline for each backend; returns the comparison directories."""
    from gpu_simulate_test.analysis.report import headline_text

    from gpu_simulate_test.io.meta import read_meta
    from gpu_simulate_test.io.outputs import PROFILE_META
    from gpu_simulate_test.vidur_ext.verdict import bundle_verdict

    out = []
    for backend in BACKENDS:
        app = compose_app("experiment", [f"backend={backend}", "accept_bundle=true", *OVERRIDES.get(backend, ()),
                                         *overrides])
        start = time.perf_counter()
        rec = run_experiment(app)
        comparison = Path(app.paths.comparisons) / str(rec.comparison_id)
        verdict = bundle_verdict(read_meta(Path(app.paths.profiling) / str(rec.bundle_id) / PROFILE_META))
        print(f"\n=== {backend}: pipeline took {time.perf_counter() - start:.1f} s")
        print(headline_text(comparison))
        print(f"bundle {rec.bundle_id} (accepted by the demo): verdict {verdict.line()}")
        print(f"summary: {comparison / SUMMARY}")
        out.append(comparison)
    return out


def main() -> None:
    start = time.perf_counter()
    try:
        run_demo(sys.argv[1:])
    except GstError as exc:
        fail(exc)
    except KeyboardInterrupt:
        fail(RunInterrupted(INTERRUPTED))
    print(f"\ndemo pipeline: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
