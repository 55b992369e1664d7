"""Simulate and compare the first replicate of every lognormal point whose real run is unpacked under the publish
root, including points whose second replicate is not measured yet (``publish`` leaves those out), and print each
comparison's headline and its matched steps by kind and batch size.

    bash scripts/h200_native_sweep.sh publish --folder <copy of the results folder>   # unpacks into the root
    .venv/bin/python studies/2026-12-02-native-h200-in-layer/compare_first_replicates.py [root]

root: tmp/publish-h200-native (publish's default).
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from h200_native_sweep import CAMPAIGN  # noqa: E402

from gpu_simulate_test.analysis.publish import ComparedPoint, iteration_kinds_table  # noqa: E402
from gpu_simulate_test.analysis.report import headline_text  # noqa: E402
from gpu_simulate_test.campaign import NotMeasuredError, _existing_bundle, _never_measure, experiment_app  # noqa: E402
from gpu_simulate_test.experiment import default_stages, run_experiment  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else "tmp/publish-h200-native")
fns = replace(default_stages(), profile=_existing_bundle, real=_never_measure)
for fraction in CAMPAIGN.fractions:
    overrides = CAMPAIGN.overrides("sarathi", "lognormal", fraction, 0)
    try:
        rec = run_experiment(experiment_app(root, overrides, stages=["workload"]), fns)
        if rec.real_run is None:
            continue
        rec = run_experiment(experiment_app(root, overrides, stages=["workload", "profile", "sim", "compare"],
                                            accept_bundle=True), fns)
    except NotMeasuredError:
        continue
    folder = root / "comparisons" / str(rec.comparison_id)
    print(f"\n==== lognormal {fraction:.0%} (replicate 0): {folder.name}")
    print(headline_text(folder))
    point = ComparedPoint("sarathi", "lognormal", fraction, float(rec.offered_qps), float(rec.capacity_rps),
                          (rec.point_key,), (str(rec.real_run),), str(rec.bundle_id), folder, None)
    print(iteration_kinds_table([point]).to_string(index=False))
