"""Does the outside host-speed index (``speed_sampler.py``) follow the engine's own host work? Per run and per
10-second stretch of each run: the median of the sampler's work, and the medians of the engine's packing
(``prepare``) of decode-only steps packed ahead and of steps packed again at their start (a request arrived during
the step before), from ``timeline.py``'s timelines (their ``t_*`` are on the run's clock; the run's
``clock_start_perf_counter_ns`` puts them on the sampler's).

    .venv/bin/python studies/2026-12-03-host-state/speed_index.py <speed.csv> <timeline.csv> [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BIN_S = 10


def main() -> int:
    speed = pd.read_csv(sys.argv[1])
    rows = []
    for path in map(Path, sys.argv[2:]):
        tl = pd.read_csv(path)
        meta = json.loads(path.with_name(path.name.replace(".csv", "-run_meta.json")).read_text())
        start = int(meta["clock_start_perf_counter_ns"])
        tl = tl[(tl["t_prepare0"] >= 0) & (tl["graph"] != "eager")].copy()
        tl["prepare_us"] = (tl["t_prepare1"] - tl["t_prepare0"]) / 1e3
        tl["abs_ns"] = tl["t_prepare0"] + start
        tl["repacked"] = tl["repacked"].astype("boolean").fillna(False).astype(bool)
        tl["kind"] = np.where(tl["repacked"] & (tl["first_chunks"] > 0), "again, first chunk",
                              np.where((tl["chunks"] == 0) & ~tl["repacked"], "ahead, decodes", "other"))
        t0, t1 = tl["abs_ns"].min(), tl["abs_ns"].max()
        edges = np.arange(t0, t1 + BIN_S * 1e9, BIN_S * 1e9)
        for lo, hi in [(t0, t1 + 1)] + list(zip(edges[:-1], edges[1:])):
            s = speed[(speed["t_ns"] >= lo) & (speed["t_ns"] < hi)]
            part = tl[(tl["abs_ns"] >= lo) & (tl["abs_ns"] < hi)]
            rows.append({"run": path.parent.name, "stretch": "whole run" if hi == t1 + 1 else f"+{(lo - t0) / 1e9:.0f}s",
                         "sampler_us": s["work_ns"].median() / 1e3, "sampler_n": len(s),
                         **{f"{k}_us": part.loc[part["kind"] == k, "prepare_us"].median()
                            for k in ("ahead, decodes", "again, first chunk")},
                         "again_n": int((part["kind"] == "again, first chunk").sum())})
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(df.round(1).to_string(index=False))
    bins = df[df["stretch"] != "whole run"].dropna()
    for k in ("ahead, decodes_us", "again, first chunk_us"):
        r = np.corrcoef(bins["sampler_us"], bins[k])[0, 1]
        print(f"correlation over the {len(bins)} stretches, sampler against {k[:-3]}: {r:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
