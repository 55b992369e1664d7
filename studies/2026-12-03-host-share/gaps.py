"""The host's share of the campaign's own steps, by requests: ``timeline.py``'s rerun of sarathi lognormal 30%
(``studies/2026-12-03-first-chunk/call1/``), per step the packing time and the device idle before its launch.

    .venv/bin/python studies/2026-12-03-host-share/gaps.py studies/2026-12-03-first-chunk/call1/timeline-sarathi-lognormal-0.3.csv.gz
"""

import sys

import pandas as pd

tl = pd.read_csv(sys.argv[1])
tl["prepare_us"] = (tl.t_prepare1 - tl.t_prepare0) / 1e3
tl["decide_us"] = (tl.t_decide1 - tl.t_decide0) / 1e3
bins = [0, 1, 2, 4, 8, 12, 16, 24, 32, 64, 128]
for name, part in (("decodes, packed ahead", tl[(tl.chunks == 0) & (tl.repacked != True)]),  # noqa: E712
                   ("packed again at the step's start", tl[tl.repacked == True])):  # noqa: E712
    g = part.groupby(pd.cut(part.entries, bins), observed=True).agg(
        steps=("prepare_us", "size"), prepare_us=("prepare_us", "median"), decide_us=("decide_us", "median"),
        device_idle_before_us=("gpu_gap_us", "median"))
    print(f"{name} (medians by requests)\n{g.round(1).to_string()}\n")
