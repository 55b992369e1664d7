"""The campaign bundle's choice and test check made again from its own measured files with the profiler of this tree:
what the next build, which measures the same engine again, should choose and how its test shapes should come out.

    .venv/bin/python studies/2026-12-02-h200-campaign-steps/reselect.py <bundle dir> <a real run dir>

The bundle's measured rows (``mlp_raw.csv``, ``attention_raw.csv``), whole steps (``iterations.csv``) and work outside
the layers (``head_timing``) are read as a native bundle is read now (``bundle.row_keys_record`` with the H200's wave,
16 query blocks of 64 tokens, and the graph buckets the real run's meta records), each variant of
``configs/profile/h200.yaml`` is fitted on the fit shapes and chosen on the validation shapes exactly as
``build_bundle`` does (``_fit_variants``, ``choose``), and the chosen one is checked on the test shapes beside the
two baselines (``fit_baselines``, ``baseline_table``). Only the campaign's own bundle files enter: no point.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.io.meta import write_json
from gpu_simulate_test.vidur_ext.profiler.baselines import abs_error_stats, baseline_table, fit_baselines
from gpu_simulate_test.vidur_ext.profiler.bundle import _fit_variants, measured_shapes, row_keys_record
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid
from gpu_simulate_test.vidur_ext.profiler.variants import choose, with_outside, with_step
from gpu_simulate_test.vidur_ext.step_correction import META_KEY, OUTSIDE_KEY, ROW_KEYS_KEY, row_keys

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from the repository root: its tmp/cache
from step_variants import H200_WAVE, run_buckets  # noqa: E402


def main() -> int:
    bundle, real_run = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                        "backend.vidur_scheduler=sarathi", "profile=h200"])
    keys = row_keys_record(cfg, H200_WAVE, run_buckets(real_run))
    meta = json.loads((bundle / "profile_meta.json").read_text())
    iters = pd.read_csv(bundle / "iterations.csv")
    mlp, att = pd.read_csv(bundle / "mlp_raw.csv"), pd.read_csv(bundle / "attention_raw.csv")
    predict = vidur_predict(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / bundle.name
        shutil.copytree(bundle, raw)
        write_json(raw / "profile_meta.json", {**meta, META_KEY: None, OUTSIDE_KEY: None, **keys})
        (fit_names, fit_shapes, fit_ms), (val_names, val_shapes, val_ms), (test_names, test_shapes, test_ms) = (
            measured_shapes(iters, role) for role in ("fit", "validation", "test"))
        every = fit_shapes + val_shapes + test_shapes
        raw_pred = np.asarray(predict(raw, every), dtype=float)
        split = np.cumsum([len(fit_shapes), len(val_shapes)])
        raw_fit, raw_val, raw_test = np.split(raw_pred, split)
        capped = list(zip(val_shapes + test_shapes, [*raw_val, *raw_test]))
        grid = build_grid(cfg.model, cfg.backend, cfg.profile)
        candidates, _ = _fit_variants(cfg, mlp, att, iters, grid, bundle.name, Path(tmp), fit_shapes, fit_ms, val_shapes,
                                      raw_fit, raw_val, predict, capped, meta["head_timing"], keys)
        chosen, validation, record = choose(candidates, val_names, np.asarray(val_ms, dtype=float))
    winner = next(c for c in candidates if c.name == chosen)
    reading = row_keys(keys[ROW_KEYS_KEY])
    if winner.step is not None:
        test_pred = with_step(winner.step, test_shapes, raw_test)
    elif winner.outside is not None:
        test_pred = with_outside(winner.outside, test_shapes, raw_test, reading)
    else:
        test_pred = raw_test
    pd.set_option("display.width", 200)
    print(f"row keys: {keys[ROW_KEYS_KEY]}")
    for c in candidates:
        print(f"{c.name}: validation median / P90 |error| {record['variants'][c.name]['median_abs_error_pct']:.1f} / "
              f"{record['variants'][c.name]['p90_abs_error_pct']:.1f}%"
              + (f"; correction {c.step}" if c.step is not None else ""))
    print(f"chosen: {chosen}\n")
    print(validation.assign(error_pct=validation["error_pct"].round(1)).to_string(index=False))
    baselines = fit_baselines(fit_shapes, fit_ms)
    check = baseline_table(test_names, test_shapes, np.asarray(test_ms, dtype=float), test_pred, baselines)
    print("\ntest shapes (ns; errors %):")
    print(check.round(1).to_string(index=False))
    for name, col in (("bundle", "error_pct"), ("constant", "constant_error_pct"), ("linear", "linear_error_pct")):
        med, p90 = abs_error_stats(check[col].to_numpy(dtype=float))
        print(f"{name}: median |error| {med:.1f}%, P90 {p90:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
