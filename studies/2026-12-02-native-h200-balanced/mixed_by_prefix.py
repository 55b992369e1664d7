"""Matched mixed steps (a prefill chunk beside decodes) of a comparison by the chunk's prefix (its request's prompt
tokens processed in earlier steps) and size: median real and simulated step (ms) and median error (%). Also by the
number of decodes. Explains the TTFT tail: a long prompt's later chunks.

    .venv/bin/python studies/2026-12-02-native-h200-balanced/mixed_by_prefix.py <root> <comparison id>

root: where the comparison and its real run are (tmp/publish-h200-native after publish).
"""

import sys
from pathlib import Path

import pandas as pd

root, cmp_id = Path(sys.argv[1]), sys.argv[2]
real = cmp_id.split("--")[0].removeprefix("cmp-")
pairs = pd.read_csv(root / "comparisons" / cmp_id / "tables" / "iteration_pairs.csv")
steps = pd.read_csv(root / "real_runs" / real / "iteration_metrics.csv").set_index("iteration_id")
prompt = pd.read_csv(root / "real_runs" / real / "request_metrics.csv").set_index("request_id")["num_prefill_tokens"]
done: dict[int, int] = {}
prefix: dict[int, int] = {}  # iteration -> the largest prefix of a prefill chunk in it
for iid, entries in steps["requests"].items():
    chunks = []
    for entry in entries.split(";"):
        rid, n = (int(x) for x in entry.removeprefix("r").split(":"))
        if done.get(rid, 0) < prompt[rid]:
            chunks.append(done.get(rid, 0))
        done[rid] = done.get(rid, 0) + n
    prefix[iid] = max(chunks, default=0)
m = pairs[(pairs.num_prefill_tokens > 0) & (pairs.num_decode_tokens > 0)].copy()
m["prefix"] = m.real_iteration_id.map(prefix)
m["error_pct"] = 100 * (m.sim_step_ns - m.real_step_ns) / m.real_step_ns
m["chunk"] = pd.cut(m.num_prefill_tokens, [0, 128, 384, 512], labels=["<=128", "129-384", "385-512"])
m["prefix_bin"] = pd.cut(m.prefix, [-1, 0, 512, 1024, 2048, 8192], labels=["0", "1-512", "513-1024", "1025-2048", ">2048"])
agg = dict(steps=("error_pct", "size"), real_ms=("real_step_ns", lambda x: x.median() / 1e6),
           sim_ms=("sim_step_ns", lambda x: x.median() / 1e6), error_pct=("error_pct", "median"))
print(cmp_id)
print(m.groupby(["chunk", "prefix_bin"], observed=True).agg(**agg).round(2).to_string())
