"""A native bundle's own steps against what it predicts of them, from its archive (no GPU): every fit, validation and
test shape (at the KV its decodes had) and every step of its host grid, with, for the step variant, its fitted
correction's share of each predicted step (what the cap holds: ``correction.max_fitted_share_pct``).

    python3 -m uv run python studies/2026-12-04-campaign/bundle_steps.py \\
        docs/results/h200-qwen3-0.6b-native/bundles/qwen3-0.6b-h200-native-fc003abd0aa8.tar.xz
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiler.bundle import measured_shapes
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import first_chunks, tokens_8


def main(archive: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        root = next(Path(tmp).glob("profiling/*"))
        meta = json.loads((root / "profile_meta.json").read_text())
        cfg = compose_app("vidur_profile", ["hardware=h200", "backend=native", "profile=h200", "model=qwen3-0.6b",
                                            f"paths.root={tmp}"])
        predict = vidur_predict(cfg)
        step = meta.get("step_correction")
        print(f"{meta['id']} on {meta['host_load']['gpu']}: variant {meta['variant']}, step correction {step}")
        print("set         shape                   measured ms  predicted ms   error  fitted share")
        iters = pd.read_csv(root / "iterations.csv")
        for role in ("fit", "validation", "test"):
            names, shapes, ms = measured_shapes(iters, role)
            for name, shape, m, p in zip(names, shapes, ms, predict(root, shapes)):
                share = "" if step is None else f"{100 * abs(_fitted(step, shape)) / p:11.2f}%"
                print(f"{role:10s}  {name:22s} {m:12.4f} {p:13.4f} {100 * (p / m - 1):+6.1f}%  {share}")
        grid = meta["host_timing"]
        shapes = [BatchShape.parse(s) for s in grid["shape"]]
        for name, shape, m, p in zip(grid["shape"], shapes, grid["wall_ms"], predict(root, shapes)):
            share = "" if step is None else f"{100 * abs(_fitted(step, shape)) / p:11.2f}%"
            print(f"{'host grid':10s}  {name:22s} {m:12.4f} {p:13.4f} {100 * (p / m - 1):+6.1f}%  {share}")


def _fitted(step: dict, shape: BatchShape) -> float:
    return float(step["c_iter_ms"] + step["c_token_ms"] * tokens_8(shape) + step.get("c_first_ms", 0.0) * first_chunks(shape))


if __name__ == "__main__":
    main(sys.argv[1])
