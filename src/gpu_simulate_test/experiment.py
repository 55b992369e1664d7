"""One experiment point: workload -> real run -> profile bundle -> simulation -> comparison.

Every stage's output is found again before it is rebuilt: workloads and bundles by their content
ids, runs and comparisons through the point's record (``<paths.root>/experiments/<point_key>.json``),
so an interrupted sweep resumes where it stopped, also after its run directories travelled back
from a GPU machine as archives. An output is reused only while what it was made from is unchanged, by
content: a rebuilt bundle makes the point's simulation and comparison again (``specs/experiment.md``).

Whatever can be checked without measuring is checked before the first measurement (the capacity probe
or the real run): the stages named, the load against the arrival process, the context against the
model, the bundle's grid against the workload and an existing bundle's verdict.
"""

from __future__ import annotations

import json
import logging
import math
import os
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
from gpu_simulate_test.engine import id_basis
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import canonical_json, file_sha256, short_hash, without_defaults
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import COMPARISON_META, PROFILE_META, RUN_META, write_archive
from gpu_simulate_test.io.runs import recorded_backend, run_content
from gpu_simulate_test.vidur_ext.profiler import sized_for_workload
from gpu_simulate_test.vidur_ext.profiling_root import BUNDLE_KIND, bundle_content
from gpu_simulate_test.vidur_ext.verdict import bundle_verdict, require_accepted
from gpu_simulate_test.workloads.load import load_workload
from gpu_simulate_test.workloads.spec import context_limit

log = logging.getLogger(__name__)
App = TypeVar("App")
RATE_PROCESSES = ("poisson", "gamma", "constant")  # their ``qps`` sets the offered load; a trace is scaled instead


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
    return short_hash(canonical_json({**without_defaults(parts, ExperimentAppConfig), **id_basis(app.backend.name)}))


def _capacity_workload(app: ExperimentAppConfig) -> WorkloadConfig:
    w = app.workload
    return replace(w, arrival=ArrivalConfig(process="all_at_once"), num_requests=int(app.capacity.num_requests),
                   name=f"{w.name}-capacity")


def capacity_path(app: ExperimentAppConfig) -> Path:
    """Where the capacity of the point's model, hardware, backend and workload lengths is cached: keyed by what
    decides it, a trace file by its content (as the workload id keys it), not where it lies on this machine."""
    workload = asdict(_capacity_workload(app))
    if workload["lengths"]["path"] and Path(workload["lengths"]["path"]).is_file():
        workload["lengths"]["path"] = file_sha256(Path(workload["lengths"]["path"]))
    key = short_hash(canonical_json({**without_defaults({
        "workload": workload, "seed": app.seed, **_groups(app, ("model", "hardware", "backend")),
    }, ExperimentAppConfig), **id_basis(app.backend.name)}))
    return Path(app.paths.root) / "capacity" / f"{key}.json"


def probe_capacity(app: ExperimentAppConfig, stages: StageFunctions) -> float:
    """Sustainable request rate of the backend on this workload's lengths: N requests at once, N / makespan.

    Cached per (model, hardware, backend, lengths, seed) under ``<root>/capacity/``, also under ``overwrite``: the
    points of one sweep are fractions of one measured capacity.
    """
    cache = capacity_path(app)
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


def _meta(path: Path, meta_name: str) -> Optional[dict[str, Any]]:
    """A complete output's meta; None for anything missing, unreadable or incomplete (it is simply made again)."""
    try:
        meta = read_meta(path / meta_name)
    except Exception:  # noqa: BLE001 - anything unreadable is simply redone
        return None
    return meta if meta["status"] == "complete" else None


def check_config(app: ExperimentAppConfig) -> None:
    """What the config alone can get wrong, refused before anything runs."""
    for key, names in (("stages", app.stages), ("redo", app.redo)):
        unknown = set(names) - set(STAGES)
        if unknown:
            raise InputError(f"{key}: {sorted(unknown)} unknown; choose from {list(STAGES)}")
    load, process = app.load, app.workload.arrival.process
    if load.qps is not None and load.capacity_fraction is not None:
        raise InputError("set load.qps or load.capacity_fraction, not both")
    if app.workload.arrival.phases and (load.qps is not None or load.capacity_fraction is not None):
        raise InputError("load.qps/capacity_fraction set one rate, but workload.arrival.phases set their own")
    for name, value in (("load.qps", load.qps), ("load.capacity_fraction", load.capacity_fraction)):
        if value is not None and not value > 0:
            raise InputError(f"{name}={value} must be > 0")
        if value is not None and process not in (*RATE_PROCESSES, "trace"):
            raise InputError(f"{name} needs a rate-based arrival process ({', '.join(RATE_PROCESSES)}) or a trace to scale "
                             f"(workload.arrival.process=trace, through workload.arrival.time_scale), not {process!r}")
    span = load.max_arrival_span_s
    if span is not None and (span <= 0 or (load.qps is None and load.capacity_fraction is None)):
        raise InputError("load.max_arrival_span_s needs a positive value and load.qps or load.capacity_fraction")
    context_limit(app.workload, app.model)


def _redo(app: ExperimentAppConfig) -> set[str]:
    """The stages to run again even if their output is current: ``redo``, or all of them under ``overwrite``."""
    return set(STAGES) if app.overwrite else set(app.redo)


def _arrival_rate(workload_dir: Path) -> float:
    """Requests per second of a written workload: (n - 1) / its last arrival."""
    w = load_workload(workload_dir.parent, workload_dir.name)
    last_s = max(r.arrival_time_ns for r in w.requests) / 1e9
    if len(w.requests) < 2 or last_s <= 0:
        raise InputError(f"workload {w.workload_id}: a trace whose requests all arrive at once has no rate to scale to "
                         "load.qps / load.capacity_fraction; use a rate-based arrival process")
    return (len(w.requests) - 1) / last_s


def point_workload(app: ExperimentAppConfig, qps: Optional[float], fns: StageFunctions) -> Path:
    """The point's workload: ``qps`` as the rate of a rate-based process, or as the rate a trace is scaled to through
    ``workload.arrival.time_scale``; sized by ``load.max_arrival_span_s``."""
    w = app.workload
    if qps is not None and w.arrival.process != "trace":
        w = replace(w, arrival=replace(w.arrival, qps=float(qps)))
    span = app.load.max_arrival_span_s
    if span is not None and qps is not None:  # check_config: a span comes with a rate
        sized = max(1, math.ceil(float(qps) * float(span)))
        w = replace(w, num_requests=sized if w.num_requests is None else min(int(w.num_requests), sized))
    overwrite = "workload" in _redo(app)
    if qps is not None and w.arrival.process == "trace":
        as_traced = fns.workload(_sub(WorkloadSpecAppConfig, app, workload=w, overwrite=overwrite))
        w = replace(w, arrival=replace(w.arrival, time_scale=w.arrival.time_scale * _arrival_rate(as_traced) / float(qps)))
    return fns.workload(_sub(WorkloadSpecAppConfig, app, workload=w, overwrite=overwrite))


def _wants_bundle(app: ExperimentAppConfig) -> bool:
    return bool({"profile", "sim"} & set(app.stages))


def check_bundle(app: ExperimentAppConfig, workload_id: str) -> VidurProfileAppConfig:
    """The point's vidur-profile config (its grid sized to the workload), refused now rather than after a measurement
    if that grid cannot cover the workload, or if the bundle it names exists with a verdict the user did not accept."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    cfg = sized_for_workload(_sub(VidurProfileAppConfig, app, workload_id=workload_id, overwrite="profile" in _redo(app)))
    path = Path(app.paths.profiling) / bundle_id(cfg)
    if path.is_dir() and not cfg.overwrite and "profile" in app.stages:
        require_accepted(bundle_verdict(read_meta(path / PROFILE_META, BUNDLE_KIND)), path, bool(app.accept_bundle))
    return cfg


def _real_current(app: ExperimentAppConfig, rec: PointRecord) -> bool:
    meta = _meta(Path(app.paths.real_runs) / rec.real_run, RUN_META) if rec.real_run else None
    return meta is not None and meta["inputs"].get("workload_id") == rec.workload_id


def _kv_pool_from_real_run(app: ExperimentAppConfig, rec: PointRecord) -> Optional[int]:
    """The KV pool (blocks) vidur-sim takes from the point's real run: with ``backend.num_blocks: null``, the count
    the engine resolved and the run recorded (``simulate.recorded_kv_pool``); None when it takes none."""
    if app.backend.num_blocks is not None or rec.real_run is None:
        return None
    blocks = recorded_backend(Path(app.paths.real_runs) / rec.real_run).get("num_blocks")
    return None if blocks is None else int(blocks)


def _sim_current(app: ExperimentAppConfig, rec: PointRecord) -> bool:
    """The recorded simulation was made from this workload, from this bundle as it is now (by content) and with the
    KV pool the point's real run now records (where it takes one)."""
    meta = _meta(Path(app.paths.vidur_runs) / rec.sim_run, RUN_META) if rec.sim_run else None
    if meta is None or rec.bundle_id is None:
        return False
    inputs = meta["inputs"]
    content = bundle_content(Path(app.paths.profiling) / rec.bundle_id)
    return (inputs.get("workload_id") == rec.workload_id and inputs.get("bundle_id") == rec.bundle_id
            and content is not None and inputs.get("bundle_content") == content
            and inputs.get("real_run_num_blocks") == _kv_pool_from_real_run(app, rec))


def _comparison_current(app: ExperimentAppConfig, rec: PointRecord) -> bool:
    """The recorded comparison was made from the point's two runs as they are now (by content)."""
    meta = _meta(Path(app.paths.comparisons) / rec.comparison_id, COMPARISON_META) if rec.comparison_id else None
    if meta is None or rec.real_run is None or rec.sim_run is None:
        return False
    inputs, p = meta["inputs"], app.paths
    return (inputs.get("real_run") == rec.real_run and inputs.get("sim_run") == rec.sim_run
            and inputs.get("real_content") == run_content(Path(p.real_runs) / rec.real_run)
            and inputs.get("sim_content") == run_content(Path(p.vidur_runs) / rec.sim_run))


def run_experiment(app: ExperimentAppConfig, stages: Optional[StageFunctions] = None) -> PointRecord:
    """Run (or resume) one point; stages not listed in ``app.stages`` are skipped, as are all after a missing input."""
    check_config(app)
    fns = stages or default_stages()
    redo, want = _redo(app), set(app.stages)
    capacity = None
    qps = app.load.qps
    if app.load.capacity_fraction is not None:
        if _wants_bundle(app) and not capacity_path(app).is_file():  # the probe measures: check the grid first
            check_bundle(app, fns.workload(_sub(WorkloadSpecAppConfig, app, overwrite=False)).name)
        capacity = probe_capacity(app, fns)
        qps = float(app.load.capacity_fraction) * capacity
    wdir = point_workload(app, qps, fns)
    rec = _load(app, point_key(app, wdir.name), wdir.name)
    rec.offered_qps, rec.capacity_rps = qps, capacity
    profile_cfg = check_bundle(app, rec.workload_id) if _wants_bundle(app) else None

    if "real" in redo or not _real_current(app, rec):
        if "real" not in want:
            _save(app, rec)
            return rec
        rec.real_run = fns.real(_sub(RealBenchAppConfig, app, workload_id=rec.workload_id, overwrite="real" in redo)).name
        _save(app, rec)
    if "profile" in want and profile_cfg is not None:  # content-addressed: an existing bundle is found by id
        rec.bundle_id = fns.profile(profile_cfg).name
        _save(app, rec)
    elif rec.bundle_id is None:
        return _archive(app, rec)
    if "sim" in redo or not _sim_current(app, rec):
        if "sim" not in want:
            return _archive(app, rec)
        rec.sim_run = fns.sim(_sub(VidurSimAppConfig, app, workload_id=rec.workload_id, profiling_root=rec.bundle_id,
                                   real_run=rec.real_run, overwrite="sim" in redo)).name  # real_run: its KV pool
        rec.comparison_id = None
        _save(app, rec)
    if "compare" in want and ("compare" in redo or not _comparison_current(app, rec)):
        # A comparison's id follows its runs' ids, so one made from a run since replaced in place is replaced too.
        rec.comparison_id = fns.compare(_sub(CompareRunsAppConfig, app, real_run=rec.real_run, sim_run=rec.sim_run,
                                             overwrite=True)).name
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
        *([capacity_path(app)] if app.load.capacity_fraction is not None else []),
        Path(p.workloads) / rec.workload_id,
        *([Path(p.real_runs) / rec.real_run] if rec.real_run else []),
        *([Path(p.profiling) / rec.bundle_id] if rec.bundle_id else []),
        *([Path(p.vidur_runs) / rec.sim_run] if rec.sim_run else []),
        *([Path(p.comparisons) / rec.comparison_id] if rec.comparison_id else []),
    ]
    write_archive(Path(app.archive_dir) / f"{rec.point_key}.tar.gz", root, members)
    return rec
