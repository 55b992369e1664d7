"""Issue 16's campaign: Vidur against the native engine on one H200, Qwen3-0.6B in bf16 (docs/results/h200-qwen3-0.6b-native/).

The ``sarathi`` setup (the engine's default: chunked prefill, budget 512, cap 128) on three workloads (lognormal long
tail with Poisson arrivals; gamma arrivals, CV 3; the shipped Azure conversation trace with its own arrivals, scaled
by ``workload.arrival.time_scale``), and the ``vllm`` setup (whole prompts, token cap 4096: the longest lognormal
prompt) on the lognormal workload; loads of 10, 30, 50, 70 and 90% of each setup's capacity measured on that
workload (1,000 requests at once), 1,000 requests a point, each point measured twice. Each setup's bundle is built
first, in the first call, on the H200 the points then run on (``campaign.py``; the runbook is
``context/h200-native-sweep-runbook.md``). ``scripts/h200_native_sweep.sh`` wraps the commands:

    plan                          the calls this campaign needs, from assumed capacities (no GPU)
    dry-run --out DIR             every task's config composed and the bundles' shapes and grids listed (no GPU)
    run --out DIR                 one call on the GPU host: the tasks that fit --budget, packed into DIR/pack-<i>.tar
    collect [FILES_AT]            here, after a call: its files into the result folder (commit it), carry refreshed;
                                  without FILES_AT, in a new checkout: the carry rebuilt from the committed folder
    rederive SETUP --from ID      here: SETUP's bundle as today's code derives it from the measurements of a filed
                                  bundle (no GPU: after a change to the derivation alone), filed, carry refreshed
    publish [--folder F]          here: the folder's tables, figures, summary and MANIFEST.csv from its archives
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gpu_simulate_test.campaign import Campaign, collect, plan_text, publish, rederive, run_call

# The published result: collect files each call's archives here (committed after every collect: a session's
# checkout starts without tmp/), publish writes its tables, figures, summary and MANIFEST.csv; it travels with every
# device call (64 MiB at most, the runbook's "Size"). Gathered in studies/2026-12-h200-native-campaign/results/ until
# it was published (2026-12-03); its archives since 2026-12-04 are the re-packing engine's, gathered in a folder of
# their own (studies/2026-12-04-repack/) and adopted when complete: a campaign on another engine does the same
# (--folder, --carry).
FOLDER = Path("docs/results/h200-qwen3-0.6b-native")
CARRY = Path("tmp/h200-sweep-carry")
CAMPAIGN = Campaign(
    name="h200-qwen3-0.6b-native",
    common=("model=qwen3-0.6b", "hardware=h200", "capacity.num_requests=1000"),
    setups={
        "sarathi": ("backend=native", "backend.vidur_scheduler=sarathi"),
        # CUDA graphs up to the token cap (the engine's default buckets stop at 512: longer steps ran eagerly, bound
        # by the host's kernel launches, 12-21 ms by its load; 2026-12-04), at the grid's token points (no padding
        # to a token count the operators were not timed at)
        "vllm": ("backend=native", "backend.vidur_scheduler=vllm", "backend.max_batch_tokens=4096",
                 "backend.cuda_graph_token_sizes=[16,32,64,128,256,512,768,1024,1536,2048,3072,4096]"),
    },
    workloads={
        "lognormal": ("workload=lognormal_long_tail", "workload.num_requests=1000"),
        "gamma": ("workload=gamma", "workload.num_requests=1000"),
        "conversation": ("workload=conversation",),
    },
    fractions=(0.1, 0.3, 0.5, 0.7, 0.9),
    replicates=2,
    setup_workloads={"vllm": ("lognormal",)},
    # Estimates from the native engine's H200 sessions (studies/2026-12-01-native-h200: engine start-up ~11 s;
    # studies/2026-12-02-native-h200: h200.yaml's bundle in 181 s with 337 attention points, 300 s allowed for the
    # 1,335 of 8 KV points an octave; the sarathi bundle took 465 s on 2026-12-04 and 533 s with the host grid in
    # three passes, studies/2026-12-04-campaign: a bundle now starts only in a call with that much left).
    bundle_s=500.0, probe_s=45.0, point_overhead_s=20.0, first_start_s=40.0,
)
# The plan's assumptions (requests/s), replaced in a run by the probes' figures: the sarathi capacities the probes
# measured on 2026-12-02 with the balanced decode attention of 6445ffb (lognormal 97.9, gamma 92.3, conversation
# 58.6: studies/2026-12-02-native-h200-balanced; 76.7, 72.6, 47.4 before); vllm 102.2 with graphs up to its cap
# (2026-12-03; 59.0 when its prompts over 512 tokens ran eagerly).
ASSUMED_CAPACITY = {("sarathi", "lognormal"): 97.0, ("sarathi", "gamma"): 92.0, ("sarathi", "conversation"): 58.0,
                    ("vllm", "lognormal"): 102.0}
TITLE = "Vidur against the native engine: Qwen3-0.6B on one H200"
REPRODUCE = (f"bash scripts/h200_native_sweep.sh publish --folder {FOLDER}   # unpacks points/ and bundles/, "
             "simulates, compares, writes every table, figure and this summary")


def _dry_run(out: Path) -> int:
    """Every task's experiment config composed, every setup's bundle config with its shape sets and grid."""
    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.vidur_ext.profiler.grid import build_grid

    for setup in CAMPAIGN.setups:
        for workload in CAMPAIGN.workloads_of(setup):
            for fraction in CAMPAIGN.fractions:
                for r in range(CAMPAIGN.replicates):
                    compose_app("experiment", [*CAMPAIGN.overrides(setup, workload, fraction, r), f"paths.root={out}"])
        app = compose_app("experiment", [*CAMPAIGN.overrides(setup, CAMPAIGN.workloads_of(setup)[0], 0.1, 0),
                                         f"paths.root={out}"])
        grid = build_grid(app.model, app.backend, app.profile)
        sets = app.profile.shape_sets()
        print(f"{setup}: backend {app.backend.name} policy {app.backend.vidur_scheduler} budget {app.backend.max_batch_tokens} "
              f"cap {app.backend.max_requests_per_batch}; variants {app.profile.variants}, cap "
              f"{app.profile.correction_cap_pct:g}%; grid {len(grid.token_points)} token points, {len(grid.prefill_points)} "
              f"prefill and {len(grid.decode_points)} decode attention points, limits {grid.limits.to_dict()}")
        for name, shapes in sets.items():
            print(f"  {name} ({len(shapes)}): {' '.join(shapes)}")
    print(f"composed {sum(1 for t in CAMPAIGN.tasks() if t.kind == 'point')} points' configs")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan")
    d = sub.add_parser("dry-run")
    d.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--root", type=Path, default=Path("tmp"))
    r.add_argument("--carry", type=Path, default=CARRY)
    r.add_argument("--budget", type=float, default=540.0, help="seconds of tasks to start in this call")
    r.add_argument("--only", default=None, help="a regular expression: only the points it matches (e.g. 'r0$')")
    c = sub.add_parser("collect")
    c.add_argument("returned", type=Path, nargs="?", default=None,
                   help="the call's files_at; left out: only refresh the carry from the folder (a new checkout)")
    c.add_argument("--folder", type=Path, default=FOLDER)
    c.add_argument("--carry", type=Path, default=CARRY)
    d2 = sub.add_parser("rederive", help="a setup's bundle derived again from a filed bundle's measurements (no GPU)")
    d2.add_argument("setup")
    d2.add_argument("--from", dest="source", required=True, help="the filed bundle's id (its archive in bundles/)")
    d2.add_argument("--folder", type=Path, default=FOLDER)
    d2.add_argument("--carry", type=Path, default=CARRY)
    d2.add_argument("--root", type=Path, default=Path("tmp/rederive"))
    p = sub.add_parser("publish")
    p.add_argument("--folder", type=Path, default=FOLDER)
    p.add_argument("--root", type=Path, default=Path("tmp/publish-h200-native"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "plan":
        requests = {w: 1000 for w in CAMPAIGN.workloads}
        print(plan_text(CAMPAIGN, ASSUMED_CAPACITY, requests, 540.0))
        return 0
    if args.cmd == "dry-run":
        return _dry_run(args.out)
    if args.cmd == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        report = run_call(CAMPAIGN, args.root, args.out, budget_s=args.budget, carry=args.carry, only=args.only)
        print((args.out / "summary.txt").read_text())
        return 0
    if args.cmd == "rederive":
        print(rederive(CAMPAIGN, args.folder, args.root, args.carry, args.setup, args.source))
        return 0
    if args.cmd == "collect":
        for f in collect(args.returned, args.folder, args.carry, CAMPAIGN):
            print(f)
        return 0
    for f in publish(CAMPAIGN, args.folder, args.root, title=TITLE, reproduce=REPRODUCE):
        print(args.folder / f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
