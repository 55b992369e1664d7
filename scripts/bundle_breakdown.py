"""Where Vidur's predicted step goes, operator by operator, for every shape a bundle measured (fit, validation, test).

Trains Vidur's predictor on the bundle's ``mlp.csv`` / ``attention.csv`` exactly as vidur-profile's checks do, without
the bundle's whole-step correction, and prints per shape the measured step, the operators' predicted step and each
operator's share (ms per step: the per-layer time x the layers), and what the operators miss (measured - operators).
CPU only, a few seconds once the predictor is cached.

    PYTHONPATH=src .venv/bin/python scripts/bundle_breakdown.py <bundle dir> [hydra overrides of vidur_profile...]

The overrides must name the profile the bundle was built with, e.g. ``model=qwen3-0.6b hardware=h200 backend=native
profile=h200`` (the default when none are given).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

OPS = ("attention_decode_execution_time", "attention_prefill_execution_time",
       "attention_layer_pre_proj_execution_time", "attention_layer_post_proj_execution_time",
       "attention_rope_execution_time", "mlp_layer_up_proj_execution_time", "mlp_layer_act_execution_time",
       "mlp_layer_down_proj_execution_time", "attn_norm_time", "mlp_norm_time", "add_time")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    from vidur.entities import Batch, Request

    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for
    from gpu_simulate_test.vidur_ext.profiler.grid import build_grid
    from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

    root = Path(argv[0])
    overrides = argv[1:] or ["model=qwen3-0.6b", "hardware=h200", "backend=native", "profile=h200"]
    cfg = compose_app("vidur_profile", overrides)
    limits = build_grid(cfg.model, cfg.backend, cfg.profile).limits
    predictor = build_predictor(root / "mlp.csv", root / "attention.csv", model=cfg.model, hardware=cfg.hardware,
                                block_size=limits.block_size, grid=grid_for(limits), cache_root=Path(cfg.paths.cache),
                                seed=cfg.seed)
    layers = cfg.model.num_layers
    names = [n.replace("_execution_time", "").replace("_time", "").replace("attention_", "attn_") for n in OPS]
    print(f"{'shape':<22} {'role':<10} {'measured':>9} {'operators':>9} {'missed':>7} "
          + " ".join(f"{n:>14}" for n in names) + "   (ms a step)")
    with open(root / "iterations.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        q, kv = BatchShape.parse(row["shape"]).vidur_batch()
        requests = [Request(arrived_at=0.0, num_prefill_tokens=int(k), num_decode_tokens=1) for k in kv]
        et = predictor.get_execution_time(Batch(0, requests, [int(x) for x in q], [int(k) for k in kv]), 0)
        parts = [getattr(et, op) * layers for op in OPS]
        measured = int(row["median_ns"]) / 1e6
        print(f"{row['shape']:<22} {row['role']:<10} {measured:9.3f} {et.total_time * 1e3:9.3f} "
              f"{measured - et.total_time * 1e3:7.3f} " + " ".join(f"{p:14.3f}" for p in parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
