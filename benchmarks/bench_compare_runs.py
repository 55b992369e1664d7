"""compare-runs at scale: 10,000 requests x 1,000 tokens per run, from reading both run dirs to the last figure.

Target: under 30 s on a 2-core machine. The two synthetic runs (sim = real x 1.1 with 3% noise)
are written first and not timed. Iteration tables are left out: at one request per step they
would hold 10 million rows, which no real run of this size has.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.report import headline_text
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.testing import sequential_run, write_run

NUM_REQUESTS, TOKENS, TARGET_S = 10_000, 1_000, 30.0


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t0 = time.perf_counter()
        real = sequential_run(NUM_REQUESTS, TOKENS, seed=0)
        sim = real.scaled(1.1)
        # 3% multiplicative noise on every gap (TTFT included), so the distributions differ in shape too.
        arrival = np.repeat(sim.arrival_ns, sim.counts)
        gaps = np.diff(sim.times_ns, prepend=0)
        gaps[sim.offsets[:-1]] = sim.times_ns[sim.offsets[:-1]] - sim.arrival_ns
        noise = np.random.default_rng(1).normal(1.0, 0.03, len(gaps))
        gaps = np.maximum(np.rint(gaps * noise).astype(np.int64), 1)
        csum = np.cumsum(gaps)
        since = csum - np.repeat(np.concatenate(([0], csum[sim.offsets[1:-1] - 1])), sim.counts)
        sim = replace(sim, times_ns=arrival + since)
        write_run(root / "real_runs", "real-bench", "real_run", "wl-bench", real, with_iterations=False)
        write_run(root / "vidur_runs", "sim-bench", "vidur_run", "wl-bench", sim, with_iterations=False)
        print(f"wrote 2 runs of {NUM_REQUESTS:,} requests x {TOKENS:,} tokens in {time.perf_counter() - t0:.1f} s (not timed)")
        cfg = compose_app("compare_runs", [f"paths.root={root}", "real_run=real-bench", "sim_run=sim-bench"])
        t0 = time.perf_counter()
        out = compare_runs(cfg)
        elapsed = time.perf_counter() - t0
        print(headline_text(out))
        figs = sorted(p.name for p in (out / "figs").iterdir())
        print(f"compare-runs: {elapsed:.1f} s for {NUM_REQUESTS:,} requests x {TOKENS:,} tokens "
              f"(read both runs -> tables -> {len(figs)} figures {figs}); target < {TARGET_S:.0f} s: "
              f"{'OK' if elapsed < TARGET_S else 'TOO SLOW'}")
        return 0 if elapsed < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
