"""TTFT at low load is two modes (prompts of one chunk, of two or more): where its P50 falls, and each request's
TTFT in the real run against the simulated one by its number of chunks.

    .venv/bin/python studies/2026-12-03-untimed-rebuild/ttft_modes.py <publish root> <runs.csv> <setup> <workload> \
        <load fraction> [chunk tokens]

Uses the latest simulation ``publish`` compared with the point's first replicate (``comparisons/``). When the P50
falls between the modes, a shift of a few requests from one mode to the other moves it by the gap between them; the
per-mode medians say whether the model is off or only the quantile. Run from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

QUANTILES = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def main() -> int:
    root, runs_csv, setup, workload, load = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4],
                                             float(sys.argv[5]))
    chunk = int(sys.argv[6]) if len(sys.argv) > 6 else 512
    runs = pd.read_csv(runs_csv)
    point = runs[(runs["setup"] == setup) & (runs["workload"] == workload) & (runs["load_fraction"] == load)]
    first, second = point.sort_values("replicate")["real_run"].tolist()[:2]
    comparisons = sorted((root / "comparisons").glob(f"cmp-{first}--vidur-*"), key=lambda p: p.stat().st_mtime)
    sim = comparisons[-1].name.split("--")[-1]
    runs_by_name = {"real": root / "real_runs" / first, "real (second)": root / "real_runs" / second,
                    "sim": root / "vidur_runs" / sim}
    frames = {k: pd.read_csv(p / "request_metrics.csv") for k, p in runs_by_name.items()}
    print(f"{setup} {workload} {load:.0%}: TTFT quantiles (ms); simulation {sim}")
    for name, x in frames.items():
        cells = "  ".join(f"P{round(100 * q)} {x['ttft_ns'].quantile(q) / 1e6:.2f}" for q in QUANTILES)
        print(f"  {name:14s} {cells}")
    m = frames["real"].merge(frames["sim"], on="request_id", suffixes=("", "_sim"))
    m["chunks"] = np.minimum(np.ceil(m["num_prefill_tokens"] / chunk), 6).astype(int)
    print(f"  per request, by chunks of {chunk} (6 = 6 or more): requests, median TTFT real / sim (ms), error")
    for c, x in m.groupby("chunks"):
        real, simulated = x["ttft_ns"].median() / 1e6, x["ttft_ns_sim"].median() / 1e6
        print(f"    {c}: {len(x):4d}  {real:7.2f} / {simulated:7.2f}  {100 * (simulated / real - 1):+.1f}%")
    share = (m["chunks"] == 1).mean()
    print(f"  one-chunk prompts: {share:.1%} of requests; the P50 is {'at' if abs(share - 0.5) < 0.05 else 'not near'}"
          f" the boundary between the modes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
