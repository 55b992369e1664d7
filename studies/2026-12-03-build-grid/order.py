"""Why the bundle build's host grid is slower than a fresh engine's (the vllm build's decodes of 1-4 requests: a
host share of 96-108 us against 41-50 on a fresh engine, ``../2026-12-03-handover-state/``), even with the whole
steps timed first under a quiet progress bar (bundle ``11774aab0cd5``).

``small <setup>``: a fresh engine sized for the grid's decodes only (``run_vs_grid.py grid``'s StepTimer), three rounds
of ``decode:n x 512``. ``build <setup>``: the engine exactly as the campaign's bundle build sizes and loads it (its
vidur-profile config from ``campaign.bundle_app``; a StepTimer over the shape sets and the host grid; ``plan()``
checked), then in one ``stepping`` block: A. three rounds of the decodes; B. the shape sets, round-robin, as many
rounds as the build; C. three rounds of the decodes again; D. the build's host grid, in its order, once. Host share
(wall less device) and device time per phase, medians in us: ``order-<mode>-<setup>.csv`` under ``$OUT``.

    source scripts/gpu_env.sh && S=studies/2026-12-03-build-grid/order.py
    python3 $S small vllm && python3 $S build vllm        # one engine a process
    .venv/bin/python $S summarize studies/2026-12-03-build-grid/order-build-vllm.csv   # the medians again
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from h200_native_sweep import CAMPAIGN  # noqa: E402

from gpu_simulate_test.backends import get_backend  # noqa: E402
from gpu_simulate_test.backends.recorder import Recorder, RunClock  # noqa: E402
from gpu_simulate_test.campaign import bundle_app  # noqa: E402
from gpu_simulate_test.experiment import default_stages  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.bundle import _wanted_shapes, bundle_id, host_grid  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.grid import build_grid  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.host_share import stepping  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.iterations import StepTimer  # noqa: E402
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape  # noqa: E402

DECODES = [BatchShape.parse(f"decode:{n}x512") for n in (1, 2, 4, 8)]
CARRY = Path("tmp/h200-sweep-carry")


def config(setup: str):
    root = Path(tempfile.mkdtemp(prefix="order-"))
    if (CARRY / "capacity").is_dir():
        shutil.copytree(CARRY / "capacity", root / "capacity")
    return bundle_app(CAMPAIGN, root, setup, default_stages())


def main(mode: str, setup: str) -> int:
    cfg = config(setup)
    print(f"{setup}: the build's config, bundle id {bundle_id(cfg)}", flush=True)
    parsed = _wanted_shapes(cfg)
    timer = StepTimer(cfg.backend, [s for s, _ in parsed], cfg.profile.iteration_samples)
    graph_tokens = cfg.backend.cuda_graph_token_sizes
    grid_shapes = host_grid(build_grid(cfg.model, cfg.backend, cfg.profile), timer, graph_tokens,
                            [s.num_tokens for s, _ in parsed], cfg.backend.cuda_graph_batch_sizes)
    shapes = DECODES if mode == "small" else [s for s, _ in parsed] + grid_shapes
    timer = StepTimer(cfg.backend, shapes, cfg.profile.iteration_samples)
    print(f"{mode}: limits {timer.limits}", flush=True)
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    backend.check_workload(timer.plan())
    backend.load()
    sets = [s for s, _ in parsed if timer.unsupported(s) is None]
    phases = [("A", DECODES * 3)] if mode == "small" else [
        ("A", DECODES * 3), ("B", sets * cfg.profile.iteration_rounds), ("C", DECODES * 3),
        ("D", [s for s in grid_shapes if timer.unsupported(s) is None])]
    lines = ["phase,shape,step,host_us,device_us"]
    recorder = Recorder([], RunClock())
    try:
        with stepping(backend, recorder) as probe:
            for phase, todo in phases:
                t0 = time.monotonic()
                for shape in todo:
                    got = timer.measure(backend, recorder, shape, probe)
                    host = (got.ns - got.device_ns) / 1e3
                    lines += [f"{phase},{shape},{i},{h:.1f},{d / 1e3:.1f}" for i, (h, d) in enumerate(zip(host, got.device_ns))]
                print(f"phase {phase}: {len(todo)} shapes in {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        backend.close()
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"order-{mode}-{setup}.csv").write_text("\n".join(lines) + "\n")
    summarize(lines)
    return 0


def summarize(lines: list[str]) -> None:
    import io

    import pandas as pd

    d = pd.read_csv(io.StringIO("\n".join(lines)))
    d = d[d["shape"].isin([str(s) for s in DECODES])]
    print(d.groupby(["phase", "shape"], sort=False)[["host_us", "device_us"]].median().round(0).to_string())


if __name__ == "__main__":
    if sys.argv[1] == "summarize":  # no GPU: a csv this wrote
        raise SystemExit(summarize(Path(sys.argv[2]).read_text().splitlines()))
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
