"""Build the qwen3-0.6b profiling bundles on the H100 for hf-generate and hf-continuous; print the held-out checks.

Run on the GPU machine from the repository root, after ``source scripts/gpu_env.sh`` (which installs hydra-core,
omegaconf and vidur from the carried wheels):

    python3 scripts/vidur_profile_h100.py --out "$OUT"

Each bundle lands in ``<out>/profiling/<bundle_id>/``; the target is a median |error| <= 10% on the held-out
shapes of ``configs/profile/gpu.yaml`` and under 10 minutes for both bundles together.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="artifact root (paths.root); bundles go under <out>/profiling")
    parser.add_argument("--backends", default="hf-generate,hf-continuous:backend.use_cuda_graph=true",
                        help="comma-separated backend configs, each with its own overrides after ':' (as real-bench runs it)")
    parser.add_argument("--model", default="qwen3-0.6b")
    parser.add_argument("--hardware", default="h100")
    parser.add_argument("--overwrite", action="store_true", help="rebuild bundles that exist already")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. profile.repeat_iters=20")
    args = parser.parse_args()

    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.errors import GstError
    from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile

    t0 = time.monotonic()
    summary = []
    for spec in args.backends.split(","):
        backend, *backend_overrides = [part for part in spec.split(":") if part]
        overrides = [f"model={args.model}", f"hardware={args.hardware}", f"backend={backend}", *backend_overrides,
                     f"paths.root={args.out}", f"overwrite={str(args.overwrite).lower()}", *args.overrides]
        start = time.monotonic()
        try:
            result = run_vidur_profile(compose_app("vidur_profile", overrides))
        except GstError as exc:
            print(f"error ({backend}): {exc}", file=sys.stderr)
            return exc.exit_code
        check = result.check
        mae = float(check["error_pct"].abs().median()) if len(check) else float("nan")
        print(f"\n== {backend}: {result.path} ({'reused' if result.reused else f'built in {time.monotonic() - start:.0f} s'})")
        print("| shape | measured ms | predicted ms | error % |\n| --- | --- | --- | --- |")
        for row in check.itertuples():
            print(f"| {row.shape} | {row.measured_ns / 1e6:.3f} | {row.predicted_ns / 1e6:.3f} | {row.error_pct:+.1f} |")
        print(f"median |error|: {mae:.1f}%")
        summary.append((backend, mae))
    print(f"\ntotal {time.monotonic() - t0:.0f} s; " + ", ".join(f"{b}: median |error| {m:.1f}%" for b, m in summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
