"""The host grid's whole steps of a bundle (``host_timing``) against its parts: device (wall less the host's share)
less the operators (the bundle's rows as measured, read with its row keys) and the work outside the layers.

    .venv/bin/python studies/2026-12-03-bucket8/grid_residual.py <root with the bundle in profiling/> <bundle id>
"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.predictor import build_predictor, grid_for, predict_batch_time_s
from gpu_simulate_test.vidur_ext.step_correction import StepTerms, row_keys
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import head_term, host_share_term, with_outside
pd.set_option('display.width', 250)
root_dir, b = sys.argv[1], sys.argv[2]
root = load_profiling_root(Path(root_dir) / 'profiling' / b, check_tables=False)
m = root.meta
app = compose_app("experiment", ["model=qwen3-0.6b", "hardware=h200", "backend=native"])
keys = row_keys(m['row_keys'])
p = build_predictor(root.mlp_csv, root.attention_csv, model=app.model, hardware=app.hardware, block_size=root.limits.block_size,
                    grid=grid_for(root.limits, app.vidur), cache_root=Path(app.paths.cache), vidur=app.vidur, seed=int(app.seed),
                    step_terms=StepTerms(keys=keys))
outside = head_term(m['head_timing'])
t = m['host_timing']
host, _ = host_share_term({k: v for k, v in t.items() if k != 'packed_otherwise'})
rows = []
for name, wall, hms, eager in zip(t['shape'], t['wall_ms'], t['host_ms'], t['eager']):
    s = BatchShape.parse(name)
    raw = predict_batch_time_s(p, list(zip(*s.vidur_batch())), serial=False) * 1e3
    out = with_outside(outside, [s], np.array([0.0]), keys)[0]
    rows.append(dict(shape=name, n=s.batch_size, wall=wall, device=wall - hms, raw=raw, outside=out,
                     resid_us=1e3 * (wall - hms - raw - out), resid_pct=100 * (wall - hms - raw - out) / (wall - hms)))
print(pd.DataFrame(rows).round(3).to_string())
