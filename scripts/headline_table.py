"""Print the published headline table (real vs simulated P50/P90/P99 of TTFT, TPOT, E2E per load point) of a sweep.

    .venv/bin/python scripts/headline_table.py <sweep dir> [--capacity RPS]

Reads ``<sweep dir>/tables/sweep.csv`` (``compare-runs mode=sweep``); with ``--capacity`` each load is also given
as a percentage of it. Times are printed in ms; errors are (sim - real) / real.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METRICS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"))
STATS = ("p50", "p90", "p99")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--capacity", type=float, help="measured capacity (requests/s), to label loads as a percentage")
    args = ap.parse_args()
    df = pd.read_csv(args.sweep / "tables" / "sweep.csv")
    print("| load | metric | " + " | ".join(f"{s.upper()} real | {s.upper()} sim | {s.upper()} err" for s in STATS) + " |")
    print("| --- | --- | " + " | ".join("---: | ---: | ---:" for _ in STATS) + " |")
    for qps, point in sorted(df.groupby("load_qps"), key=lambda kv: kv[0]):
        load = f"{qps:.3g} req/s" + (f" ({100 * qps / args.capacity:.0f}%)" if args.capacity else "")
        for metric, label in METRICS:
            rows = point[point["metric"] == metric].set_index("statistic")
            if rows.empty:
                continue
            cells = []
            for s in STATS:
                r = rows.loc[s]
                cells.append(f"{r.real / 1e6:,.1f} | {r.sim / 1e6:,.1f} | {r.error_pct:+.1f}%")
            print(f"| {load} | {label} (ms) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
