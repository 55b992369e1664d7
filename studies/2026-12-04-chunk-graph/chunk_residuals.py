"""The host grid's steps with a prompt chunk, from a native bundle's archive (no GPU): their device time (wall less
the host's share, as the build measured them) against what the bundle's operators and the work outside the layers
predict of them; the residual is what ``chunk_graph`` (``variants.chunk_graph_term``) carries in bundles built since.

    python3 -m uv run python studies/2026-12-04-chunk-graph/chunk_residuals.py \\
        docs/results/h200-qwen3-0.6b-native/bundles/qwen3-0.6b-h200-native-5dc2d24de0eb.tar.xz
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import head_term, with_outside
from gpu_simulate_test.vidur_ext.step_correction import row_keys


def main(archive: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        root = next(Path(tmp).glob("profiling/*"))
        meta = json.loads((root / "profile_meta.json").read_text())
        ops_only = Path(tmp) / "operators" / root.name  # the same rows with no step term: the operators alone
        shutil.copytree(root, ops_only)
        stripped = {**meta, **{k: None for k in ("step_correction", "outside_layers", "host_term", "decode_graph",
                                                 "chunk_graph")}}
        (ops_only / "profile_meta.json").write_text(json.dumps(stripped))
        cfg = compose_app("vidur_profile", ["hardware=h200", "backend=native", "profile=h200", "model=qwen3-0.6b",
                                            f"paths.root={tmp}"])
        grid = meta["host_timing"]
        shapes = [BatchShape.parse(s) for s in grid["shape"]]
        ops = np.asarray(vidur_predict(cfg)(ops_only, shapes))
    parts = with_outside(head_term(meta["head_timing"]), shapes, ops, row_keys(meta["row_keys"]))
    print(f"{meta['id']} on {meta['host_load']['gpu']}")
    print("grid step            device ms  operators + outside ms  residual ms")
    for name, wall, host, part, eager in zip(grid["shape"], grid["wall_ms"], grid["host_ms"], parts,
                                             grid.get("eager", [False] * len(shapes))):
        if not name.startswith("decode:") and not eager:
            device = wall - host
            print(f"{name:18s}  {device:9.4f}  {part:22.4f}  {device - part:+10.4f} ({100 * (device / part - 1):+.1f}%)")


if __name__ == "__main__":
    main(sys.argv[1])
