"""Vidur's random forest and the token rows of a native bundle: with and without bootstrap samples.

Vidur fits each operator's rows with a random forest (``vidur.random_forrest``: 100 trees, depth 32) whose trees
each see a bootstrap sample of the rows. A token-indexed operator (``mlp.csv``: one row per token count) has one row
per key, so a tree that missed a row answers for it with a neighbour's: the forest averages each row with its
neighbours. Where a row differs from its neighbours, that blurs it; the native engine fuses the norms and the
activation into the projections at one token (their rows 0 there, ~0.4-1.8 us at 2 tokens), and the forest gives
the one-token step ~2.3 us a layer of them back (+64 us a lone decode, ~+5.7%). A native bundle reads its token rows
at the tokens of the CUDA graph the step runs in (``row_keys.token_rows: graph_bucket``), every one a measured row,
so a forest whose trees see every row (``bootstrap=False``) returns each row exactly where it is read.

This compares the two readings of one bundle, every other key as the bundle says: (1) the operators' rows at each
token count, forest against measured; (2) the bundle's own shapes (fit, validation, test; the steps as measured by
the build against the bundle's prediction); (3) every real step of the campaign's first replicates.

    .venv/bin/python studies/2026-12-03-forest/forest.py <bundle dir> <runs.csv> <real_runs dir>

(``runs.csv`` and ``real_runs``: a ``publish`` of the campaign's result folder). Run from the repository root; the
variant's forests are cached apart (``tmp/cache-forest``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext import predictor as pred_mod
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import step_shapes
from gpu_simulate_test.vidur_ext.step_correction import step_terms

TOKEN_OPS = ["attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "mlp_act", "input_layernorm",
             "post_attention_layernorm", "attn_rope", "add"]
ALL_ROWS = {"on": False}  # the variant: token models fitted without bootstrap


def _install() -> None:
    mixin = pred_mod._LocalProfileMixin
    estimator = mixin._get_estimator

    def _train_model(self, model_name, model_type, df, feature_cols, target_col):  # noqa: ANN001
        self._gst_token_model = list(feature_cols) == ["num_tokens"]
        return super(mixin, self)._train_model(model_name, model_type, df, feature_cols, target_col)

    def _get_estimator(self):  # noqa: ANN001
        est = estimator(self)
        if ALL_ROWS["on"] and getattr(self, "_gst_token_model", False):
            est.set_params(bootstrap=False)
        return est

    mixin._train_model, mixin._get_estimator = _train_model, _get_estimator


def predictors(bundle: Path) -> dict[str, object]:
    root = load_profiling_root(bundle, check_tables=False)
    app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
    out = {}
    for name, on, cache in (("vidur", False, Path(app.paths.cache)), ("all rows", True, Path("tmp/cache-forest"))):
        ALL_ROWS["on"] = on
        out[name] = build_predictor(root.mlp_csv, root.attention_csv, model=app.model, hardware=app.hardware,
                                    block_size=root.limits.block_size, grid=grid_for(root.limits, app.vidur),
                                    cache_root=cache, vidur=app.vidur, seed=int(app.seed),
                                    step_terms=step_terms(root.meta, str(root.path)))
    ALL_ROWS["on"] = False
    return out


def rows_table(bundle: Path, preds: dict[str, object]) -> pd.DataFrame:
    """Per token count: the token operators' rows summed (one layer), measured and as each forest returns them."""
    mlp = pd.read_csv(bundle / "mlp.csv")
    rows = []
    for n in sorted(mlp["num_tokens"].unique()):
        r = mlp[mlp["num_tokens"] == n].iloc[0]
        row = {"tokens": int(n), "measured_us": 1e3 * sum(r[f"time_stats.{o}.median"] for o in TOKEN_OPS
                                                          if f"time_stats.{o}.median" in r)}
        for name, p in preds.items():
            row[f"{name}_us"] = 1e3 * sum(p._predictions[o][(int(n),)] for o in TOKEN_OPS)
        rows.append(row)
    return pd.DataFrame(rows).set_index("tokens").round(2)


def shapes_table(bundle: Path, preds: dict[str, object]) -> pd.DataFrame:
    """The bundle's own shapes (iterations.csv), each predicted at the decode KV its steps had, by role."""
    it = pd.read_csv(bundle / "iterations.csv")
    rows = []
    for r in it.itertuples():
        s = BatchShape.parse(r.shape)
        if s.decode_batch and not np.isnan(r.decode_kv_measured):
            s = s.with_decode_kv(int(round(r.decode_kv_measured)))
        q, kv = s.vidur_batch()
        row = {"shape": r.shape, "role": r.role, "measured_ms": r.median_ns / 1e6}
        for name, p in preds.items():
            row[name] = 100 * (1e3 * predict_batch_time_s(p, list(zip(q, kv)), serial=False) - row["measured_ms"]) / row["measured_ms"]
        rows.append(row)
    return pd.DataFrame(rows)


def steps_table(preds: dict[str, object], runs_csv: Path, real_runs: Path) -> pd.DataFrame:
    runs = pd.read_csv(runs_csv)
    runs = runs[(runs["replicate"] == 0) & (runs["setup"] == "sarathi")].sort_values(["workload", "load_fraction"])
    rows = []
    for run in runs.itertuples():
        it = pd.read_csv(real_runs / run.real_run / "iteration_metrics.csv")
        measured = (it["end_time_ns"] - it["start_time_ns"]).to_numpy() / 1e6
        shapes = [step_shapes(r, k) for r, k in zip(it["requests"], it["kv_tokens"])]
        row = {"workload": run.workload, "load": run.load_fraction, "steps": len(it)}
        for name, p in preds.items():
            cache: dict = {}
            predicted = np.array([cache.setdefault(s, 1e3 * predict_batch_time_s(p, list(s), serial=False)) for s in shapes])
            err = 100 * (predicted - measured) / measured
            row[f"{name} |err| p50"] = float(np.median(np.abs(err)))
            lone = np.array([len(s) == 1 and s[0][0] == 1 for s in shapes])
            row[f"{name} lone decode"] = float(np.median(err[lone])) if lone.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index(["workload", "load"]).round(2)


def main() -> int:
    bundle, runs_csv, real_runs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    _install()
    preds = predictors(bundle)
    pd.set_option("display.width", 200)
    print(f"bundle {bundle.name}\n\n1. token operators summed over one layer (us): measured, and each forest's")
    print(rows_table(bundle, preds).to_string())
    shapes = shapes_table(bundle, preds)
    print("\n2. the bundle's own shapes: error of the predicted step (%)")
    print(shapes.round(1).to_string(index=False))
    print("\n   median |error| by role (%)")
    print(shapes.groupby("role")[list(preds)].agg(lambda e: np.median(np.abs(e))).round(2).to_string())
    print("\n3. every real step of the first replicates: median |error| (%), and the lone decodes' median error (%)")
    print(steps_table(preds, runs_csv, real_runs).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
