"""Real decode steps by batch size: the steps whose batch is the step before's against those where it changed, and
the idle gap between steps (does the host add time when requests join or leave?). Prints medians in ms.

    .venv/bin/python studies/2026-12-02-native-h200-balanced/step_changes.py <root> <real run id>...

root: where the real runs are unpacked (tmp/publish-h200-native after publish).
"""

import sys
from pathlib import Path

import pandas as pd

root = Path(sys.argv[1])
for run in sys.argv[2:]:
    it = pd.read_csv(root / "real_runs" / run / "iteration_metrics.csv")
    it["dur"] = (it.end_time_ns - it.start_time_ns) / 1e6
    gap = (it.start_time_ns.shift(-1) - it.end_time_ns) / 1e6
    ids = it.requests.map(lambda s: frozenset(x.split(":")[0] for x in s.split()))
    it["same"] = ids == ids.shift(1)
    dec = it[it.num_prefill_tokens == 0]
    print(f"{run}: {len(it)} steps, {len(dec)} decodes; gap between steps median {gap.median():.4f} ms, "
          f"over 1 us in {(gap > 0.001).mean():.1%}")
    for lo, hi in ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32)):
        d = dec[(dec.batch_size >= lo) & (dec.batch_size <= hi)]
        if len(d) >= 20:
            same, changed = d[d.same], d[~d.same]
            print(f"  decode {lo}-{hi}: {len(d)} steps; batch as before {same.dur.median():.3f} ms ({len(same)}), "
                  f"changed {changed.dur.median():.3f} ms ({len(changed)})")
