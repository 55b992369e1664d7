"""The host's share of the profiler's steps, build against build: how far the host terms of a bundle move when the
same engine is profiled again.

Every native bundle's ``iterations.csv`` holds, per whole-iteration shape, the median wall and the host's share of it
(``host_median_ns``: wall less device time) and whether the engine packed its steps at their start
(``packed_at_start``); its ``profile_meta.json`` holds the host grid (``host_timing``) whose shares become the
bundle's ``host_term``. The shapes are timed in order (fit, validation, test; then the grid), so a drift of the host's
speed over a build shows as a drift down that list; two builds of one engine show how far a build's terms move.

    .venv/bin/python studies/2026-12-03-host-state/builds.py <setup>=<bundle id>,<bundle id>,... [...]

Bundles are read from the H200 result folder's archives (``docs/results/h200-qwen3-0.6b-native/bundles``).
Run from the repository root.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

BUNDLES = Path("docs/results/h200-qwen3-0.6b-native/bundles")


def _read(bundle: str) -> tuple[pd.DataFrame, dict]:
    with tarfile.open(BUNDLES / f"qwen3-0.6b-h200-native-{bundle}.tar.xz") as tar:
        def member(name: str):
            (m,) = [m for m in tar.getmembers() if m.name.endswith(f"/{name}")]
            return tar.extractfile(m)
        return pd.read_csv(member("iterations.csv")), json.load(member("profile_meta.json"))


def main() -> int:
    pd.set_option("display.width", 200)
    for arg in sys.argv[1:]:
        setup, ids = arg.split("=")
        ids = ids.split(",")
        shares, serial, ahead = {}, {}, {}
        for b in ids:
            it, meta = _read(b)
            it = it.set_index("shape")
            shares[b] = it
            grid = meta["host_timing"]
            g = pd.DataFrame({k: grid[k] for k in ("shape", "requests", "at_start", "host_ms")})
            serial[b] = g[g["at_start"]].set_index("shape")["host_ms"] * 1e3
            ahead[b] = g[~g["at_start"]].set_index("shape")["host_ms"] * 1e3
        first = shares[ids[0]]
        print(f"== {setup}: the host's share (us) of each whole-iteration shape, in the order the profiler timed them")
        table = pd.DataFrame({"role": first["role"], "at start": first["packed_at_start"].round(2)})
        for b in ids:
            table[b] = (shares[b]["host_median_ns"] / 1e3).round(0)
        print(table.to_string())
        for at, label in ((1.0, "packed at start"), (0.0, "packed ahead")):
            rows = table[table["at start"] == at]
            print(f"\n{label}: median by role (us)")
            print(rows.groupby("role", sort=False)[ids].median().round(0).to_string())
            spread = rows[ids].max(axis=1) - rows[ids].min(axis=1)
            print(f"max - min over the builds, per shape: median {spread.median():.0f} us, largest {spread.max():.0f} us")
        print("\nthe host grid (bundle's host_term points), us: packed at start")
        print(pd.DataFrame(serial).round(0).to_string())
        a = pd.DataFrame(ahead)
        print("packed ahead: median over the grid's points (us):",
              ", ".join(f"{b} {a[b].median():.0f}" for b in ids),
              "| median |change| between consecutive builds (us):",
              ", ".join(f"{np.median(np.abs(a[y] - a[x])):.0f}" for x, y in zip(ids, ids[1:])))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
