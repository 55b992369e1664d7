"""Vidur 0.0.26's prefill attention lookup against the rows it reads: its sarathi scheduler gives a chunk's request
``num_kv_tokens`` = processed + chunk (the context after the chunk), and its predictor looks ``attn_prefill`` up at
that, rounded up to 256, while its own profiler (``vidur/profiling/attention``, ``processed_len``) and this
project's write each row at the KV cached before the chunk. Prints, per layer, what Vidur looks up and the row
measured for that chunk and prefix, and the difference over 28 layers.

    .venv/bin/python studies/2026-12-02-native-h200-balanced/prefill_lookup.py <bundle dir>

bundle dir: a bundle's archive unpacked (profiling/<id>/).
"""

import sys
from pathlib import Path

import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid

bundle = Path(sys.argv[1])
cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h200", "backend=native", "profile=h200"])
limits = build_grid(cfg.model, cfg.backend, cfg.profile).limits
predictor = build_predictor(bundle / "mlp.csv", bundle / "attention.csv", model=cfg.model, hardware=cfg.hardware,
                            block_size=limits.block_size, grid=grid_for(limits), cache_root=Path(cfg.paths.cache),
                            seed=cfg.seed)
rows = pd.read_csv(bundle / "attention.csv")
rows = rows[rows.is_prefill]
granularity = predictor._config.kv_cache_prediction_granularity
lookup = predictor._predictions["attn_prefill"]
print(f"KV granularity {granularity}; us a layer")
print("chunk prefix | Vidur's lookup (KV after, rounded) | measured row (chunk, prefix) | x 28 layers, ms")
for chunk, before in ((480, 0), (480, 480), (480, 960), (480, 1920), (256, 0), (256, 1024)):
    after = -(-(before + chunk) // granularity) * granularity
    looked_up = lookup[(after, -(-chunk // 32) * 32)] * 1e3
    c = min(rows.prefill_chunk_size.unique(), key=lambda x: abs(x - chunk))
    p = min(rows.kv_cache_size.unique(), key=lambda x: abs(x - before))
    measured = float(rows[(rows.prefill_chunk_size == c) & (rows.kv_cache_size == p)]["time_stats.attn_prefill.median"].iloc[0]) * 1e3
    print(f"{chunk:5d} {before:6d} | KV {after:5d}: {looked_up:6.1f} | ({c}, {p}): {measured:6.1f} | "
          f"{(looked_up - measured) * 28 / 1e3:+.3f}")
