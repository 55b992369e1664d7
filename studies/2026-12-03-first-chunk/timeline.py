"""Where a step that starts a request costs the native engine more than its rows: a campaign point rerun with every
step timed on the host and on the device.

The campaign's points predict a step holding a request's first chunk ~0.35 ms short (-10 to -15%), whether its
request arrived during the step before (the engine then packs the step again on the critical path) or waited in the
queue (packed ahead, while the GPU ran the step before): ``studies/2026-12-02-h200-campaign-steps/first_chunks.txt``.
Host or device? This reruns one point of the campaign (same config: ``scripts/h200_native_sweep.py``'s ``CAMPAIGN``,
its capacity from the carry) through ``experiment`` stages ``[workload, real]``, with the engine's runner wrapped by
timers (the engine's source untouched: its fingerprint, hence the campaign's, stands). For every launched step:

- host (``perf_counter_ns``, relative to the run's clock): packing (``prepare``: start, end), the decision at the
  previous step's end (``_decide``: start, end, whether it packed the step again; none: the engine was idle), the
  requests queued since the launch before, the launch call, the wait (enter, return), and the backend's recording
  of the step (``_record``);
- device (CUDA events, on a GPU only): ``gpu_step_us`` from the launch to the step's last op (its kernels, the graph
  replay or the eager forward, and the tokens' copy), ``gpu_inputs_us`` from the packing's first op to the launch
  (the input copy, the block-table upload, the token patch, and any wait for the launch), ``gpu_gap_us`` from the
  step before's last op to this launch (the device idle between them, inputs included);
- the batch: entries, tokens, chunks, first chunks (``start == 0``), the graph bucket.

    python studies/2026-12-03-first-chunk/timeline.py --out DIR [--root DIR] [--point sarathi:lognormal:0.3] ...
    python studies/2026-12-03-first-chunk/timeline.py --out DIR --cpu     # the tiny CPU model, a check of the script

Writes ``DIR/timeline-<setup>-<workload>-<load>.csv`` (one row per launched step, warm-up steps included: the
``t_*`` before 0 are before the clock started) and copies the real run's ``iteration_metrics.csv`` and
``run_meta.json`` beside it (``<same stem>-iterations.csv``, ``-run_meta.json``). ``analyze.py`` joins them with the
bundle's predictions.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def _campaign() -> Any:
    spec = importlib.util.spec_from_file_location("h200_native_sweep", REPO / "scripts" / "h200_native_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.CAMPAIGN


class Timeline:
    """The wrapped methods' records; one dict a launched step, in launch order."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every record (the wrappers stay installed: install once a process)."""
        self.steps: list[dict[str, Any]] = []
        self.packed: dict[int, dict[str, Any]] = {}  # id(PackedStep) -> its packing, until launched or discarded
        self.decide: Optional[dict[str, Any]] = None  # the decision at the step before's end (none: engine idle)
        self.arrivals = 0  # requests queued since the last launch
        self.discarded = 0

    def install(self) -> None:
        import torch

        from gpu_simulate_test.backends.native import NativeBackend
        from gpu_simulate_test.engine.engine import LLMEngine
        from gpu_simulate_test.engine.runner import ModelRunner

        tl, now = self, time.perf_counter_ns

        def event(runner: Any) -> Any:
            if runner.device.type != "cuda":
                return None
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev

        prepare, launch, wait, discard = ModelRunner.prepare, ModelRunner.launch, ModelRunner.wait, ModelRunner.discard
        decide, queue, record = LLMEngine._decide, LLMEngine._queue_arrivals, NativeBackend._record

        def t_prepare(self: Any, batch: Any, pending: Any = None, allow_graph: bool = True, pad_to: Any = None) -> Any:
            t0, ev = now(), event(self)
            packed = prepare(self, batch, pending, allow_graph, pad_to)
            entries = batch.entries
            tl.packed[id(packed)] = {
                "t_prepare0": t0, "t_prepare1": now(), "ev_inputs": ev, "entries": len(entries),
                "tokens": batch.num_tokens, "chunks": sum(e.num_q_tokens > 1 or e.is_prefill for e in entries),
                "first_chunks": sum(e.is_prefill and e.start == 0 for e in entries),
                "chunk_tokens": sum(e.num_q_tokens for e in entries if e.is_prefill),
                "new_blocks": packed.layout.D, "graph": "eager" if packed.graph_shape is None else
                "x".join(map(str, packed.graph_shape))}
            return packed

        def t_discard(self: Any, packed: Any) -> None:
            tl.packed.pop(id(packed), None)
            tl.discarded += 1
            discard(self, packed)

        def t_launch(self: Any, packed: Any) -> None:
            row = tl.packed.pop(id(packed), {})
            row["t_launch"], row["ev_launch"] = now(), event(self)
            launch(self, packed)
            row["ev_end"] = event(self)
            row["discarded_before"], row["arrivals"], tl.arrivals = tl.discarded, tl.arrivals, 0
            if tl.decide is not None:
                row.update(tl.decide)
                tl.decide = None
            tl.steps.append(row)

        def t_wait(self: Any) -> list[int]:
            t0 = now()
            out = wait(self)
            if tl.steps:
                tl.steps[-1].update(t_wait0=t0, t_wait1=now())
            return out

        def t_decide(self: Any, ahead: Any, deferred: bool, pending: Any) -> Any:
            t0 = now()
            out = decide(self, ahead, deferred, pending)
            tl.decide = {"t_decide0": t0, "t_decide1": now(), "repacked": ahead is not None and out is not ahead}
            return out

        def t_queue(self: Any) -> bool:
            with self._lock:
                tl.arrivals += len(self._arrivals)
            return queue(self)

        def t_record(self: Any, out: Any) -> None:
            t0 = now()
            record(self, out)
            for row in reversed(tl.steps):  # the step this output is (launched at its start)
                if row.get("t_wait1") is not None and row.get("t_record0") is None and row["t_wait1"] <= out.end_ns:
                    row.update(t_record0=t0, t_record1=now())
                    break

        ModelRunner.prepare, ModelRunner.launch, ModelRunner.wait, ModelRunner.discard = (t_prepare, t_launch, t_wait,
                                                                                         t_discard)
        LLMEngine._decide, LLMEngine._queue_arrivals, NativeBackend._record = t_decide, t_queue, t_record

    def frame(self, clock_start_ns: int) -> pd.DataFrame:
        """The steps as a table: host times relative to the run's clock (ns), device intervals in us."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rows, prev_end = [], None
        for i, s in enumerate(self.steps):
            row = {"launch": i}
            for k, v in s.items():
                if k.startswith("t_") and v is not None:
                    row[k] = v - clock_start_ns
                elif not k.startswith("ev_"):
                    row[k] = v
            ev_in, ev_l, ev_e = s.get("ev_inputs"), s.get("ev_launch"), s.get("ev_end")
            if ev_l is not None and ev_e is not None:
                row["gpu_step_us"] = 1e3 * ev_l.elapsed_time(ev_e)
                if ev_in is not None:
                    row["gpu_inputs_us"] = 1e3 * ev_in.elapsed_time(ev_l)
                if prev_end is not None:
                    row["gpu_gap_us"] = 1e3 * prev_end.elapsed_time(ev_l)
            prev_end = ev_e
            rows.append(row)
        return pd.DataFrame(rows)


def run_point(tl: Timeline, out: Path, root: Path, setup: str, workload: str, fraction: float, cpu: bool) -> Path:
    from gpu_simulate_test.campaign import experiment_app
    from gpu_simulate_test.experiment import default_stages, run_experiment

    campaign = _campaign()
    if cpu:  # the demo's scale: the script's own check, no GPU
        overrides = ["model=qwen3-tiny", "hardware=cpu", "backend=native", "workload=lognormal_long_tail",
                     "workload.num_requests=24", "capacity.num_requests=24", f"load.capacity_fraction={fraction:g}"]
    else:
        overrides = campaign.overrides(setup, workload, fraction, 0)
        carry = REPO / "tmp" / "h200-sweep-carry" / "capacity"
        if carry.is_dir():  # the campaign's measured capacity: the same offered load, no probe
            shutil.copytree(carry, root / "capacity", dirs_exist_ok=True)
    tl.reset()
    rec = run_experiment(experiment_app(root, overrides, stages=["workload", "real"]), default_stages())
    run = root / "real_runs" / str(rec.real_run)
    meta = pd.read_json(run / "run_meta.json", typ="series")
    stem = f"timeline-{setup}-{workload}-{fraction:g}" + ("-cpu" if cpu else "")
    df = tl.frame(int(meta["clock_start_perf_counter_ns"]))
    df.to_csv(out / f"{stem}.csv", index=False)
    shutil.copy(run / "iteration_metrics.csv", out / f"{stem}-iterations.csv")
    shutil.copy(run / "run_meta.json", out / f"{stem}-run_meta.json")
    print(f"{stem}: {len(df)} launches ({tl.discarded} packings discarded), real run {run.name}", flush=True)
    return out / f"{stem}.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=Path("tmp/first-chunk"))
    ap.add_argument("--point", action="append", default=[],
                    help="setup:workload:load, e.g. sarathi:lognormal:0.3 (repeatable; default that one)")
    ap.add_argument("--cpu", action="store_true", help="the tiny CPU model (checks the script, measures nothing)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tl = Timeline()
    tl.install()
    for point in args.point or ["sarathi:lognormal:0.3"]:
        setup, workload, load = point.split(":")
        # each point in its own root: the experiment's record of a point is keyed by its config, not by this run
        run_point(tl, args.out, args.root / point.replace(":", "-"), setup, workload, float(load), args.cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
