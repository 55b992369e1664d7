"""Shared helpers of the fold study: the committed H100 bundles (unpacked to /tmp/h100b) and their configs."""
import json, time
from pathlib import Path
import numpy as np, pandas as pd
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

ROOT = Path("/tmp/h100b/profiling")
BUNDLES = {
    "hf-continuous": ("qwen3-0.6b-h100-hf-continuous-affe5c223d78", ["backend.use_cuda_graph=true"]),
    "hf-generate": ("qwen3-0.6b-h100-hf-generate-27fea7a0f382", []),
}

def load(backend):
    name, extra = BUNDLES[backend]
    cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h100", f"backend={backend}",
                                        "paths.root=/tmp/fold_study/root", *extra])
    if bundle_id(cfg) != name: print("note: config hash now", bundle_id(cfg), "(a backend field was added since); predictions do not depend on it")
    d = ROOT / name
    meta = json.loads((d / "profile_meta.json").read_text())
    return cfg, d, meta, pd.read_csv(d / "mlp.csv"), pd.read_csv(d / "attention.csv"), pd.read_csv(d / "iterations.csv")
