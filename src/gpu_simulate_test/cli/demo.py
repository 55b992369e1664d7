"""``make demo``: the whole pipeline on the embedded default, on the CPU, with the native engine.

It composes the ``experiment`` app's config, runs (or reuses) every stage, then prints the comparison's headline
table, its bundle's verdict and the path of its ``summary.md``. The CPU bundle is built in the same run on whatever
host runs the demo, so the demo accepts it explicitly (``accept_bundle=true``) whatever its verdict, says what that
verdict is, and what numbers measured on a CPU mean. ``backend=<name>`` runs another backend instead
(``hf-generate``, ``hf-continuous``).

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

DEFAULT_BACKEND = "native"
# The demo workload holds 16 requests, so a batch cap of 16 schedules exactly what native's 128 would; it keeps the
# CPU profile grid (decode batches up to the cap) to what the demo can meet.
OVERRIDES = {"native": ("backend.max_requests_per_batch=16",)}
CPU_NUMBERS = (
    "What these numbers are: qwen3-tiny with random weights on this host's CPU (the native engine's plain-torch "
    "reference ops, no CUDA graphs), beside whatever else the host runs. They show that every stage runs and how well "
    "Vidur's model fits this engine on this host; they say nothing about a GPU engine (for that: the "
    "H200 result, docs/results/h200-qwen3-0.6b-native/, and the H100's, docs/results/h100-qwen3-0.6b/)."
)


def run_demo(overrides: list[str]) -> Path:
    """Run the pipeline for the native engine (or the ``backend=`` given); returns the comparison directory."""
    from gpu_simulate_test.analysis.report import headline_text
    from gpu_simulate_test.io.meta import read_meta
    from gpu_simulate_test.io.outputs import PROFILE_META
    from gpu_simulate_test.vidur_ext.verdict import bundle_verdict

    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("backend=")]
    backend = chosen[-1] if chosen else DEFAULT_BACKEND
    app = compose_app("experiment", [f"backend={backend}", "accept_bundle=true", *OVERRIDES.get(backend, ()), *overrides])
    start = time.perf_counter()
    rec = run_experiment(app)
    comparison = Path(app.paths.comparisons) / str(rec.comparison_id)
    meta = read_meta(Path(app.paths.profiling) / str(rec.bundle_id) / PROFILE_META)
    verdict = bundle_verdict(meta)
    print(f"\n=== {backend} on the CPU: pipeline took {time.perf_counter() - start:.1f} s")
    print(f"bundle {rec.bundle_id}, built in this run and accepted by the demo whatever its verdict: {verdict.line()}")
    if meta.get("variant"):
        print(f"its variant, chosen on its validation shapes: {meta['variant']}")
    print(headline_text(comparison))
    print(CPU_NUMBERS)
    print(f"summary: {comparison / SUMMARY}")
    return comparison


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
