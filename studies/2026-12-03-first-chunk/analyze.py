"""``timeline.py``'s steps beside the bundle's prediction of each: which part of a first chunk's step the rows miss.

    .venv/bin/python studies/2026-12-03-first-chunk/analyze.py <bundle dir> <timeline.csv> [...]

Each real step (its ``-iterations.csv``) is predicted from its own batch as vidur-sim reads the bundle
(``vidur_ext/replay.py``) and joined to its launch in the timeline (the wait's return is the step's end, within a few
us). Steps by kind (decode only; one chunk, a later one; one chunk, a first one; more chunks), and for a step with a
first chunk by how it was formed (packed ahead while the GPU ran the step before; packed again at that step's end
because requests arrived; the engine idle). Per class, medians: the measured step (``wall``), the device's time from
the launch to the step's last op (``gpu``), the host's time from the step's start (the step before's end) to the
launch (``to_launch``; of it the decision at the step before's end, ``decide``, which packs the step again when
requests arrived), the packing of the step (``prepare``: ahead or again), the backend's recording of the step, the
device idle before the launch (``gap``), the predicted step and its error against the wall and against the device
time. Run from the repository root (Vidur's predictor cache in its ``tmp/``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
from gpu_simulate_test.vidur_ext.replay import replay_steps, step_shapes


def _kind(requests: str, kv: str) -> str:
    shapes = step_shapes(requests, kv)
    chunks = [(q, k) for q, k in shapes if q > 1]
    decodes = len(shapes) - len(chunks)
    if not chunks:
        return "decode only"
    first = sum(q == k for q, k in chunks)
    beside = " + decodes" if decodes else ""
    if len(chunks) > 1:
        return f"{len(chunks)} chunks, {first} first{beside}"
    return ("first chunk" if first else "later chunk") + beside


def steps(bundle: Path, timeline: Path) -> pd.DataFrame:
    """One row per measured step: its iteration, prediction and launch."""
    stem = timeline.parent / timeline.name.removesuffix(".gz").removesuffix(".csv")
    it = pd.read_csv(next(p for p in (Path(f"{stem}-iterations.csv"), Path(f"{stem}-iterations.csv.gz")) if p.exists()))
    meta = json.loads(Path(f"{stem}-run_meta.json").read_text())
    cfg = meta["config"]
    app = compose_app("experiment", [f"model={cfg['model']['name']}", f"hardware={cfg['hardware']['name']}",
                                     f"backend={cfg['backend']['name']}"])
    # The timeline keeps no request table; the study's bundle (c50eb92bcf74) has no host term, so how a step was
    # packed changes nothing of its prediction (the timeline's own ``repacked`` says it, below).
    pred = replay_steps(load_profiling_root(bundle, check_tables=False), it, model=app.model, hardware=app.hardware,
                        vidur=app.vidur, seed=int(app.seed), cache_root=Path(app.paths.cache),
                        at_start=np.zeros(len(it), dtype=bool))
    it = it.assign(predicted_ns=pred["predicted_ns"].to_numpy(), measured_ns=pred["measured_ns"].to_numpy(),
                   kind=[_kind(r, k) for r, k in zip(it["requests"], it["kv_tokens"])])
    tl = pd.read_csv(timeline).dropna(subset=["t_wait1"])
    tl = tl[tl["t_wait1"] >= 0].sort_values("t_wait1")
    joined = pd.merge_asof(it.sort_values("end_time_ns"), tl, left_on="end_time_ns", right_on="t_wait1",
                           direction="nearest", tolerance=200_000)
    missing = joined["launch"].isna().sum()
    if missing:
        print(f"{timeline.name}: {missing} of {len(joined)} steps without a launch within 0.2 ms of their end")
    joined["formed"] = np.where(joined["t_decide0"].isna(), "engine idle",
                                np.where(joined["repacked"] == True, "packed again at the end", "packed ahead"))  # noqa: E712
    joined["to_launch_us"] = (joined["t_launch"] - joined["start_time_ns"]) / 1e3
    joined["decide_us"] = (joined["t_decide1"] - joined["t_decide0"]) / 1e3
    joined["prepare_us"] = (joined["t_prepare1"] - joined["t_prepare0"]) / 1e3
    joined["record_us"] = (joined["t_record1"] - joined["t_record0"]) / 1e3
    return joined


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Medians per kind of step and way it was formed."""
    df = df.assign(wall_us=df["measured_ns"] / 1e3, predicted_us=df["predicted_ns"] / 1e3)
    df["err_wall_pct"] = 100 * (df["predicted_us"] - df["wall_us"]) / df["wall_us"]
    df["err_gpu_pct"] = 100 * (df["predicted_us"] - df["gpu_step_us"]) / df["gpu_step_us"]
    df["wall_minus_gpu_us"] = df["wall_us"] - df["gpu_step_us"]
    cols = ["wall_us", "gpu_step_us", "wall_minus_gpu_us", "to_launch_us", "decide_us", "prepare_us", "record_us",
            "gpu_gap_us", "gpu_inputs_us", "predicted_us", "err_wall_pct", "err_gpu_pct"]
    g = df.groupby(["kind", "formed"])
    out = g[cols].median().round(1)
    out.insert(0, "steps", g.size())
    return out


def main() -> int:
    bundle = Path(sys.argv[1])
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    for timeline in map(Path, sys.argv[2:]):
        df = steps(bundle, timeline)
        print(f"== {timeline.name}: {len(df)} steps; bundle {bundle.name}")
        print(summary(df).to_string())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
