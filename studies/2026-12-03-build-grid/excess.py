"""How much of the published step errors the probe's excess explains (no GPU): for decodes of 1, 2 and 4 requests
packed ahead, each published bundle's host share (its ``host_timing``, probe on) less the hand-over a run has
(``onoff-vllm.csv.gz``: the grid's wall with the probe off less its device time with it on, medians over the three
cycles), as a share of the runs' median step of that size at 10% load, beside the matched steps' median error there
(``tables/iteration_kinds.csv``, lognormal 10%).

Then, from a publish root (``publish`` writes ``tmp/publish-h200-native/``), the vllm setup's lone prompts at
lognormal 10% (first replicate), matched: simulated less real step, median by prompt tokens.

    .venv/bin/python studies/2026-12-03-build-grid/excess.py [publish root]     # > excess.txt
"""
import json
import sys
import tarfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
FOLDER = Path("docs/results/h200-qwen3-0.6b-native")
d = pd.read_csv(HERE / "onoff-vllm.csv.gz")
g = d[(d.part == "grid") & (d.prefill_tokens == 0) & ~d.at_start.astype(bool)]
run_handover = (g[~g.probe.astype(bool)].groupby("requests").wall_us.median()
                - g[g.probe.astype(bool)].groupby("requests").device_us.median())
kinds = pd.read_csv(FOLDER / "tables" / "iteration_kinds.csv")
bundles = pd.read_csv(FOLDER / "tables" / "bundle_test.csv").groupby("setup").bundle_id.first()
print("setup,requests,bundle_host_us,run_handover_us,excess_us,real_step_us,excess_pct,matched_error_pct")
for setup, bid in bundles.items():
    with tarfile.open(FOLDER / "bundles" / f"{bid}.tar.xz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("profile_meta.json"))
        timing = json.load(tar.extractfile(member))["host_timing"]
    host = {s: h * 1e3 for s, h in zip(timing["shape"], timing["host_ms"])}
    for n in (1, 2, 4):
        row = kinds[(kinds.setup == setup) & (kinds.workload == "lognormal") & (kinds.load_fraction == 0.1)
                    & (kinds.kind == "decode") & (kinds.batch_size_min <= n) & (kinds.batch_size_max >= n)].iloc[0]
        excess = host[f"decode:{n}x512"] - run_handover[n]
        real = row.real_step_ns_p50 / 1e3
        print(f"{setup},{n},{host[f'decode:{n}x512']:.0f},{run_handover[n]:.0f},{excess:.0f},{real:.0f},"
              f"{100 * excess / real:.1f},{row.error_pct_p50:.1f}")

root = Path(sys.argv[1] if len(sys.argv) > 1 else "tmp/publish-h200-native")
runs = pd.read_csv(FOLDER / "tables" / "runs.csv")
real = runs[(runs.setup == "vllm") & (runs.workload == "lognormal") & (runs.load_fraction == 0.1)
            & (runs.replicate == 0)].iloc[0].real_run
cmp_dir = sorted((root / "comparisons").glob(f"cmp-{real}--vidur-*"), key=lambda p: p.stat().st_mtime)[-1]
pairs = pd.read_csv(cmp_dir / "tables" / "iteration_pairs.csv")
lone = pairs[(pairs.num_decode_tokens == 0) & (pairs.batch_size == 1)].copy()
lone["tokens"] = pd.cut(lone.num_prefill_tokens, [0, 128, 256, 512, 1024, 2048, 4096])
lone["sim_less_real_us"] = (lone.sim_step_ns - lone.real_step_ns) / 1e3
print(f"\nvllm lognormal 10% r0, lone prompts ({cmp_dir.name}): sim less real, medians")
print(lone.groupby("tokens", observed=True).agg(steps=("sim_less_real_us", "size"),
                                                 real_ms=("real_step_ns", lambda x: x.median() / 1e6),
                                                 sim_less_real_us=("sim_less_real_us", "median")).round(2).to_string())
