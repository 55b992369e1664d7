"""One experiment point: workload -> real run -> profile bundle -> simulation -> comparison.

Every stage's output is found again before it is rebuilt: workloads and bundles by their content
ids, runs and comparisons through the point's record (``<paths.root>/experiments/<point_key>.json``),
so an interrupted sweep resumes where it stopped, also after its run directories travelled back
from a GPU machine as archives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tarfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from gpu_simulate_test.config.apps import (
    CompareRunsAppConfig,
    RealBenchAppConfig,
    VidurProfileAppConfig,
    VidurSimAppConfig,
    WorkloadSpecAppConfig,
)
from gpu_simulate_test.config.experiment import STAGES, ExperimentAppConfig
from gpu_simulate_test.config.workload import ArrivalConfig, WorkloadConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import canonical_json, short_hash, without_defaults
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import RUN_META

log = logging.getLogger(__name__)
App = TypeVar("App")


@dataclass
class PointRecord:
    """What one point has produced so far; ids only, the directories hold the data."""

    point_key: str
    workload_id: str
    offered_qps: Optional[float] = None
    capacity_rps: Optional[float] = None
    real_run: Optional[str] = None
    bundle_id: Optional[str] = None
    sim_run: Optional[str] = None
    comparison_id: Optional[str] = None


def _sub(cls: type[App], app: ExperimentAppConfig, **values: Any) -> App:
    """A stage's app config: the experiment's fields that the stage also has, then ``values``."""
    shared = {f.name: getattr(app, f.name) for f in fields(cls) if hasattr(app, f.name) and f.name not in values}
    return cls(**shared, **values)


def _record_path(app: ExperimentAppConfig, key: str) -> Path:
    return Path(app.paths.root) / "experiments" / f"{key}.json"


def _save(app: ExperimentAppConfig, rec: PointRecord) -> None:
    path = _record_path(app, rec.point_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(rec), indent=2) + "\n")
    tmp.replace(path)


def _load(app: ExperimentAppConfig, key: str, workload_id: str) -> PointRecord:
    """The point's record; a fresh one when there is none or ``overwrite`` asks for every stage again."""
    path = _record_path(app, key)
    if path.is_file() and not app.overwrite:
        return PointRecord(**json.loads(path.read_text()))
    return PointRecord(point_key=key, workload_id=workload_id)


def _groups(app: ExperimentAppConfig, names: tuple[str, ...]) -> dict[str, Any]:
    return {g: asdict(getattr(app, g)) for g in names}


def point_key(app: ExperimentAppConfig, workload_id: str) -> str:
    """Everything that decides the point's results, hashed: same config and workload, same key on any machine."""
    parts = {"workload_id": workload_id, "seed": app.seed, "replicate": app.replicate,
             **_groups(app, ("model", "hardware", "backend", "vidur", "profile"))}
    return short_hash(canonical_json(without_defaults(parts, ExperimentAppConfig)))


def _complete(path: Path, meta_name: str) -> bool:
    try:
        return read_meta(path / meta_name)["status"] == "complete"
    except Exception:  # noqa: BLE001 - anything unreadable is simply redone
        return False


def _workload_cfg(app: ExperimentAppConfig, qps: Optional[float]) -> WorkloadSpecAppConfig:
    w = app.workload
    if qps is not None:
        if w.arrival.process in ("all_at_once", "trace"):
            raise InputError(f"load.qps/capacity_fraction need a rate-based arrival process, not {w.arrival.process!r}")
        if w.arrival.phases:
            raise InputError("load.qps/capacity_fraction set one rate, but workload.arrival.phases set their own")
        w = replace(w, arrival=replace(w.arrival, qps=float(qps)))
    span = app.load.max_arrival_span_s
    if span is not None:
        if qps is None or span <= 0:
            raise InputError("load.max_arrival_span_s needs a positive value and load.qps or load.capacity_fraction")
        sized = max(1, math.ceil(float(qps) * float(span)))
        w = replace(w, num_requests=sized if w.num_requests is None else min(int(w.num_requests), sized))
    return _sub(WorkloadSpecAppConfig, app, workload=w)


def _capacity_workload(app: ExperimentAppConfig) -> WorkloadConfig:
    w = app.workload
    return replace(w, arrival=ArrivalConfig(process="all_at_once"), num_requests=int(app.capacity.num_requests),
                   name=f"{w.name}-capacity")


def _capacity_path(app: ExperimentAppConfig) -> Path:
    key = short_hash(canonical_json(without_defaults({
        "workload": asdict(_capacity_workload(app)), "seed": app.seed, **_groups(app, ("model", "hardware", "backend")),
    }, ExperimentAppConfig)))
    return Path(app.paths.root) / "capacity" / f"{key}.json"


def probe_capacity(app: ExperimentAppConfig, stages: StageFunctions) -> float:
    """Sustainable request rate of the backend on this workload's lengths: N requests at once, N / makespan.

    Cached per (model, hardware, backend, lengths, seed) under ``<root>/capacity/``, also under ``overwrite``: the
    points of one sweep are fractions of one measured capacity.
    """
    cache = _capacity_path(app)
    if cache.is_file():
        return float(json.loads(cache.read_text())["capacity_rps"])
    wdir = stages.workload(_sub(WorkloadSpecAppConfig, app, workload=_capacity_workload(app)))
    run_dir = stages.real(_sub(RealBenchAppConfig, app, workload_id=wdir.name))
    from gpu_simulate_test.io.runs import load_run

    run = load_run(run_dir)
    makespan_s = (run.requests["completion_time_ns"].max() - run.requests["arrival_time_ns"].min()) / 1e9
    capacity = len(run.requests) / makespan_s
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"capacity_rps": capacity, "real_run": run_dir.name, "makespan_s": makespan_s}, indent=2) + "\n")
    log.info("capacity probe: %d requests in %.2f s -> %.3f requests/s", len(run.requests), makespan_s, capacity)
    return capacity


@dataclass(frozen=True)
class StageFunctions:
    """The library function behind each app; each takes its app's config and returns its output directory."""

    workload: Callable[[WorkloadSpecAppConfig], Path]
    real: Callable[[RealBenchAppConfig], Path]
    profile: Callable[[VidurProfileAppConfig], Path]
    sim: Callable[[VidurSimAppConfig], Path]
    compare: Callable[[CompareRunsAppConfig], Path]


def default_stages() -> StageFunctions:
    from gpu_simulate_test.analysis.compare import compare_runs
    from gpu_simulate_test.real_bench.run import run_real_bench
    from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile
    from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim
    from gpu_simulate_test.workloads.spec import generate_workload

    return StageFunctions(generate_workload, run_real_bench, lambda a: run_vidur_profile(a).path, run_vidur_sim, compare_runs)


def run_experiment(app: ExperimentAppConfig, stages: Optional[StageFunctions] = None) -> PointRecord:
    """Run (or resume) one point; stages not listed in ``app.stages`` are skipped, as are all after a missing input."""
    unknown = set(app.stages) - set(STAGES)
    if unknown:
        raise InputError(f"stages {sorted(unknown)} unknown; choose from {list(STAGES)}")
    fns = stages or default_stages()
    capacity = None
    qps = app.load.qps
    if app.load.capacity_fraction is not None:
        if qps is not None:
            raise InputError("set load.qps or load.capacity_fraction, not both")
        capacity = probe_capacity(app, fns)
        qps = float(app.load.capacity_fraction) * capacity
    wdir = fns.workload(_workload_cfg(app, qps))
    rec = _load(app, point_key(app, wdir.name), wdir.name)
    rec.offered_qps, rec.capacity_rps = qps, capacity
    p = app.paths
    want = set(app.stages)

    if not (rec.real_run and _complete(Path(p.real_runs) / rec.real_run, RUN_META)):
        if "real" not in want:
            _save(app, rec)
            return rec
        rec.real_run = fns.real(_sub(RealBenchAppConfig, app, workload_id=rec.workload_id)).name
        _save(app, rec)
    if "profile" in want:  # content-addressed: an existing bundle is found by id, not rebuilt
        rec.bundle_id = fns.profile(_sub(VidurProfileAppConfig, app)).name
        _save(app, rec)
    elif rec.bundle_id is None:
        return _archive(app, rec)
    if not (rec.sim_run and _complete(Path(p.vidur_runs) / rec.sim_run, RUN_META)):
        if "sim" not in want:
            return _archive(app, rec)
        rec.sim_run = fns.sim(_sub(VidurSimAppConfig, app, workload_id=rec.workload_id, profiling_root=rec.bundle_id,
                                   real_run=rec.real_run)).name  # its recorded KV pool, where the engine sized one
        rec.comparison_id = None
        _save(app, rec)
    if rec.comparison_id is None or not (Path(p.comparisons) / rec.comparison_id).is_dir():
        if "compare" in want:
            rec.comparison_id = fns.compare(_sub(CompareRunsAppConfig, app, real_run=rec.real_run, sim_run=rec.sim_run)).name
            _save(app, rec)
    return _archive(app, rec)


def _archive(app: ExperimentAppConfig, rec: PointRecord) -> PointRecord:
    """Pack the point's record and directories (relative to paths.root) into one tar.gz, if asked."""
    if not app.archive_dir:
        return rec
    p = app.paths
    root = Path(p.root)
    members = [
        _record_path(app, rec.point_key),
        *([_capacity_path(app)] if app.load.capacity_fraction is not None else []),
        Path(p.workloads) / rec.workload_id,
        *([Path(p.real_runs) / rec.real_run] if rec.real_run else []),
        *([Path(p.profiling) / rec.bundle_id] if rec.bundle_id else []),
        *([Path(p.vidur_runs) / rec.sim_run] if rec.sim_run else []),
        *([Path(p.comparisons) / rec.comparison_id] if rec.comparison_id else []),
    ]
    out = Path(app.archive_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / f"{rec.point_key}.tar.gz", "w:gz") as tar:
        for m in members:
            tar.add(m, arcname=str(m.resolve().relative_to(root.resolve())))
    return rec
