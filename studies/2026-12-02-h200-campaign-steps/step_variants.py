"""Every real step of the campaign's first 22 points, predicted by Vidur from the campaign's bundle read three ways:
how much of the matched-step error is where Vidur 0.0.26 looks a native bundle's rows up, and how much the work
outside the layers.

    .venv/bin/python studies/2026-12-02-h200-campaign-steps/step_variants.py <bundle dir> <runs.csv> <real_runs dir>

bundle dir: the bundle's archive unpacked (profiling/<id>/); runs.csv: ``publish``'s ``tables/runs.csv`` (which real
run is which point); real_runs dir: the publish root's ``real_runs/``. Each step is the real batch (chunk tokens and
KV after the step, per request) as ``iteration_metrics.csv`` records it, measured end - start (consecutive steps
share their boundary, so the host's work between steps is in), predicted as one Vidur ``Batch`` through the
project's predictor (``vidur_ext/predictor.py``), with the bundle's rows (its ``operators`` variant) and:

- ``vidur``: Vidur's own keys (prefill attention at the KV after the chunk; token rows at the step's tokens rounded
  up to 8), what the bundle as built (``a3c59701dd57``) gives vidur-sim;
- ``keys``: the rows read as a native bundle since says (``bundle.NATIVE_ROW_KEYS``: prefill attention at the KV
  before the chunk, token rows at the exact tokens, batched decode attention without Vidur's x1.1), a step's
  chunks summed;
- ``keys+head``: plus the work outside the layers measured in the same build (``head_timing``, by the step's
  requests: ``variants.head_term``), what the ``head`` variant of a bundle built since adds;
- ``keys+head, x1.1``: the same with Vidur's decode batching factor kept (what that key alone does);
- ``keys+head+wave``: ``keys+head`` with a step's chunks that fit one wave of the engine's prefill launch read as the
  longest one's row (``prefill_chunks: one_wave``; the H200's wave: 132 SMs / 8 KV heads = 16 query blocks of 64
  tokens, what ``EngineLayerOps.prefill_wave`` gives there);
- ``keys+head+wave+graphs``: and the token rows (and the work outside the layers) at the CUDA graph the engine
  replayed the step in (``token_rows: graph_bucket``, the buckets each real run's meta records): the full reading
  of a native bundle built since.

These points are the campaign's evaluation, not a validation set: nothing here chooses a variant (the next bundle's
validation shapes do); it explains the matched-step errors of the first 22 points.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiler.bundle import NATIVE_ROW_KEYS
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid
from gpu_simulate_test.vidur_ext.profiler.variants import head_term
from gpu_simulate_test.vidur_ext.replay import step_shapes
from gpu_simulate_test.vidur_ext.step_correction import StepTerms


H200_WAVE = (132 // 8, 64)  # the H200's prefill wave for Qwen3-0.6B: query blocks a KV head, tokens a block


def _predictors(bundle: Path, buckets: tuple[list[int], list[int]] = ([], [])) -> dict[str, object]:
    """The readings above; ``buckets``: the engine's graph buckets (sequences, tokens) for the last one."""
    cfg = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native", "profile=h200"])
    limits = build_grid(cfg.model, cfg.backend, cfg.profile).limits
    head = head_term(json.loads((bundle / "profile_meta.json").read_text())["head_timing"])
    keys = replace(NATIVE_ROW_KEYS, prefill_chunks="summed", token_rows="exact")
    x11 = replace(keys, decode_batching="vidur_overhead")
    wave = replace(NATIVE_ROW_KEYS, prefill_wave_blocks=H200_WAVE[0], prefill_block_q=H200_WAVE[1], token_rows="exact")
    graphs = replace(wave, token_rows="graph_bucket", graph_batch_sizes=tuple(buckets[0]),
                     graph_token_sizes=tuple(buckets[1]))
    terms = {"vidur": StepTerms(), "keys": StepTerms(keys=keys), "keys+head": StepTerms(outside=head, keys=keys),
             "keys+head, x1.1": StepTerms(outside=head, keys=x11), "keys+head+wave": StepTerms(outside=head, keys=wave)}
    if buckets[0]:
        terms["keys+head+wave+graphs"] = StepTerms(outside=head, keys=graphs)
    return {name: build_predictor(bundle / "mlp.csv", bundle / "attention.csv", model=cfg.model, hardware=cfg.hardware,
                                  block_size=limits.block_size, grid=grid_for(limits), cache_root=Path(cfg.paths.cache),
                                  seed=cfg.seed, vidur=cfg.vidur, step_terms=t) for name, t in terms.items()}


def run_buckets(real_run: Path) -> tuple[list[int], list[int]]:
    """The graph buckets a native real run's engine captured (``run_meta.json``: ``backend``)."""
    backend = json.loads((real_run / "run_meta.json").read_text())["backend"]
    return list(backend["cuda_graph_batch_sizes"]), list(backend["cuda_graph_token_sizes"])


def _kind(shapes: tuple[tuple[int, int], ...]) -> str:
    decodes = sum(1 for q, _ in shapes if q == 1)
    if decodes == len(shapes):
        return "decode 1" if decodes == 1 else ("decode 2-8" if decodes <= 8 else "decode 9+")
    first = any(q == kv for q, kv in shapes if q != 1)
    return ("mixed" if decodes else "prefill") + (" (first chunk)" if first else " (later chunk)")


def main() -> int:
    bundle, runs_csv, real_dir = (Path(a) for a in sys.argv[1:4])
    runs = pd.read_csv(runs_csv)
    predictors = _predictors(bundle, run_buckets(real_dir / runs.real_run.iloc[0]))
    cache: dict[tuple, list[float]] = {}
    rows = []
    for run in runs.itertuples():
        it = pd.read_csv(real_dir / run.real_run / "iteration_metrics.csv")
        for rec in it.itertuples():
            shapes = step_shapes(rec.requests, rec.kv_tokens)
            if shapes not in cache:
                cache[shapes] = [1e3 * predict_batch_time_s(p, list(shapes), serial=False) for p in predictors.values()]
            rows.append((run.workload, run.load_fraction, _kind(shapes), (rec.end_time_ns - rec.start_time_ns) / 1e6,
                         *cache[shapes]))
    names = list(predictors)
    df = pd.DataFrame(rows, columns=["workload", "load", "kind", "measured_ms", *names])
    err = pd.DataFrame({v: 100.0 * (df[v] - df.measured_ms) / df.measured_ms for v in names})
    err[["workload", "load", "kind"]] = df[["workload", "load", "kind"]].astype({"workload": str, "kind": str})
    pd.set_option("display.width", 200)
    print(f"{len(df)} real steps (both replicates), {len(cache)} distinct batches\n")
    print("median |error| of the predicted step (%), per point:")
    print(err.groupby(["workload", "load"])[names].agg(lambda s: float(np.median(np.abs(s)))).round(1).to_string())
    print("\nmedian signed error (%) by kind of step, all points; share of the steps and their median measured time:")
    out = err.groupby("kind")[names].median().round(1)
    out["share_%"] = (100.0 * err.groupby("kind").size() / len(err)).round(1)
    out["measured_ms"] = df.groupby(df.kind.astype(str)).measured_ms.median().round(3)
    print(out.to_string())
    last = names[-1]
    print(f"\nmedian signed error (%) of {last} by kind and load:")
    for wl in sorted(err.workload.unique()):
        sub = err[err.workload == wl]
        print(wl)
        print(sub.groupby(["kind", "load"])[last].median().unstack().round(1).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
