"""The fitted correction's share of a step bundle's predicted steps, every set, from its archive (no GPU)."""
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiler.bundle import measured_shapes
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.variants import first_chunks, tokens_8
root = Path(sys.argv[1])
meta = json.loads((root / "profile_meta.json").read_text())
c = meta["step_correction"]
cfg = compose_app("vidur_profile", ["hardware=h200", "backend=native", "profile=h200", "model=qwen3-0.6b", "paths.root=/tmp/fs"])
it = pd.read_csv(root / "iterations.csv")
for role in ("fit", "validation", "test"):
    names, shapes, ms = measured_shapes(it, role)
    pred = np.asarray(vidur_predict(cfg)(root, shapes))
    corr = np.array([c["c_iter_ms"] + c["c_token_ms"] * tokens_8(s) + c["c_first_ms"] * first_chunks(s) for s in shapes])
    share = 100 * np.abs(corr) / pred
    err = 100 * np.abs(pred - np.array(ms)) / np.array(ms)
    print(f"{role:10s} {len(shapes):2d} shapes: fitted share median {np.median(share):5.2f}%, max {share.max():.4f}% "
          f"({names[int(share.argmax())]}); median |error| {np.median(err):.2f}%")
print("step_correction", c, "recorded share_pct", meta["correction"]["share_pct"])
