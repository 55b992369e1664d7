"""A measured sweep, run in calls of a lent GPU host and published here from its archives.

A :class:`Campaign` names backend setups (each with its own bundle and capacity probes), workloads, load fractions
and a number of replicates: every point (setup x workload x fraction) is measured ``replicates`` times on the real
engine, on the same workload, so that the spread between two real runs is known beside the simulation's error.

The GPU half (:func:`run_call`) works through the campaign's tasks in order (per setup: its bundle, its capacity
probes, then its points per workload: the first replicate of every fraction, then the second, so that a point's two
runs are minutes apart and their spread includes the host's drift over minutes, not one moment's state), skipping what
a previous call already brought back and starting a task only if its estimated time fits what is left of the call's
budget, so that the same command, repeated, finishes the campaign. It runs the GPU stages only
(``stages=[workload,real]``, and vidur-profile for the bundle); everything it makes is packed into ``pack-<i>.tar``
files (the device tool brings back at most 8 files of at most 16 MiB) holding ``points/<point_key>.tar.xz`` (the
point's record, capacity file and real run; its workload is regenerated here from the campaign's config, its
content-addressed id proving the same bytes), ``bundles/<bundle_id>.tar.xz`` and
``diagnostics/capacity-<setup>-<workload>-<key>.tar.xz`` (the probe's run; ``key``: its capacity file's, which an
engine change changes). Between calls, :func:`collect` files a call's packs into the result folder and refreshes the
carried state (the capacities, and what was collected), which the next call, on a fresh machine, starts from.

The local half (:func:`publish`) unpacks a result folder's archives, simulates and compares the first replicate of
every point (``experiment``, the bundle found by its id, never measured here), compares the second replicate with
the first (the real-vs-real spread), and writes the folder's tables, figures, summary and ``MANIFEST.csv``
(``analysis/publish.py``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.config.experiment import ExperimentAppConfig
from gpu_simulate_test.engine import measured_with
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.outputs import ARCHIVE_MODES, SUMMARY, WORKLOAD_META, write_archive

README = "README.md"  # a result folder's findings, written by hand (publish lists it in MANIFEST.csv, never writes it)

log = logging.getLogger(__name__)
COLLECTED = "collected.txt"  # carry: the point keys and bundle ids whose archives the result folder holds already
PACK_BYTES = 15 * 2**20  # each pack under the device tool's 16 MiB per file


@dataclass(frozen=True)
class Campaign:
    """A sweep: ``setups`` (label -> experiment overrides of the backend and profile), ``workloads`` (label ->
    overrides of the workload), the load ``fractions`` of each setup's measured capacity and the ``replicates``."""

    name: str
    common: tuple[str, ...]  # experiment overrides of every point (model, hardware, capacity probe, seed ...)
    setups: dict[str, tuple[str, ...]]
    workloads: dict[str, tuple[str, ...]]
    fractions: tuple[float, ...]
    replicates: int
    setup_workloads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # setup -> its workloads (default: all)
    # Estimates (s) that decide whether a task still fits a call: a bundle build, a capacity probe, what a point
    # adds to its arrivals (engine start-up, drain, archive), and the first engine of a call (imports, kernel
    # compilation, graph capture).
    bundle_s: float = 330.0
    probe_s: float = 40.0
    point_overhead_s: float = 20.0
    first_start_s: float = 90.0

    def __post_init__(self) -> None:
        for setup, names in self.setup_workloads.items():
            unknown = [w for w in names if w not in self.workloads]
            if setup not in self.setups or unknown:
                raise InputError(f"campaign {self.name}: setup_workloads[{setup!r}] names what the campaign does not "
                                 f"define ({[setup] if setup not in self.setups else unknown})")
        if self.replicates < 1 or not self.fractions:
            raise InputError(f"campaign {self.name}: needs at least one fraction and one replicate")

    def workloads_of(self, setup: str) -> tuple[str, ...]:
        return self.setup_workloads.get(setup, tuple(self.workloads))

    def overrides(self, setup: str, workload: str, fraction: float, replicate: int) -> list[str]:
        """The experiment overrides of one point."""
        return [*self.common, *self.setups[setup], *self.workloads[workload], f"load.capacity_fraction={fraction:g}",
                f"replicate={replicate}"]

    def tasks(self) -> Iterator["Task"]:
        """Every task of the campaign, in the order the GPU half runs them."""
        for setup in self.setups:
            yield Task("bundle", setup)
            for workload in self.workloads_of(setup):
                yield Task("capacity", setup, workload)
            for workload in self.workloads_of(setup):
                for r in range(self.replicates):
                    for fraction in self.fractions:
                        yield Task("point", setup, workload, fraction, r)


@dataclass(frozen=True)
class Task:
    kind: str  # bundle | capacity | point
    setup: str
    workload: Optional[str] = None
    fraction: Optional[float] = None
    replicate: int = 0

    def __str__(self) -> str:
        return " ".join(str(x) for x in (self.kind, self.setup, self.workload, self.fraction, f"r{self.replicate}")
                        if x is not None) if self.kind == "point" else f"{self.kind} {self.setup} {self.workload or ''}".strip()


def experiment_app(root: Path, overrides: list[str], **fields: Any) -> ExperimentAppConfig:
    app = compose_app("experiment", [*overrides, f"paths.root={root}"])
    return replace(app, **fields)


def bundle_app(campaign: Campaign, root: Path, setup: str, stages: Any) -> Any:
    """The setup's vidur-profile config exactly as ``experiment`` derives it for its first point (its grid sized to
    that workload), so that every point finds the bundle by its id."""
    from gpu_simulate_test.experiment import check_bundle, point_workload

    app = experiment_app(root, campaign.overrides(setup, campaign.workloads_of(setup)[0], campaign.fractions[0], 0),
                         stages=["workload"])
    return check_bundle(app, point_workload(app, None, stages).name)


# --- the GPU half --------------------------------------------------------------------------------------------


@dataclass
class CallReport:
    """What one call did: one line per task, for ``summary.txt``."""

    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    pending: int = 0  # tasks left for a later call

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def add(self, line: str) -> None:
        log.info(line)
        self.lines.append(f"{self.elapsed():7.1f}s {line}")

    def write(self, out: Path) -> None:
        """``out/summary.txt``: the lines so far and how many tasks are left."""
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "summary.txt").write_text("".join(f"{x}\n" for x in self.lines)
                                               + f"{self.pending} task(s) left for later calls\n")


def read_collected(carry: Optional[Path]) -> set[str]:
    path = Path(carry) / COLLECTED if carry else None
    return set(path.read_text().split()) if path is not None and path.is_file() else set()


def run_call(campaign: Campaign, root: Path, out: Path, *, budget_s: float, carry: Optional[Path] = None,
             stages: Any = None, only: Optional[str] = None) -> CallReport:
    """One call of the GPU half (see the module docstring): the pending tasks that fit ``budget_s``, packed into
    ``out/pack-<i>.tar``. ``only``: a regular expression; points whose name (``point sarathi lognormal 0.3 r0``) it
    does not match wait for a later call (bundles and probes, which the points need, are never held back)."""
    from gpu_simulate_test.experiment import capacity_path, default_stages, run_experiment
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    fns = stages or default_stages()
    report = CallReport()
    # Archives are staged outside ``out`` (whatever lies there comes back, 8 files at most) and packed into ``out``
    # after every task, so a call cut short by its time limit still brings back every task it finished.
    root, staged = Path(root), Path(root) / ".campaign-staged"
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staged, ignore_errors=True)
    if carry is not None and (Path(carry) / "capacity").is_dir():
        shutil.copytree(Path(carry) / "capacity", root / "capacity", dirs_exist_ok=True)
    collected = read_collected(carry)
    first = True
    stop = False
    for task in campaign.tasks():
        if stop:
            report.pending += 1
            continue
        left = budget_s - report.elapsed()
        start = campaign.first_start_s if first else 0.0
        if task.kind == "bundle":
            cfg = bundle_app(campaign, root, task.setup, fns)
            if bundle_id(cfg) in collected:
                continue
            estimate = campaign.bundle_s + start
        else:
            workload = task.workload
            assert workload is not None
            fraction = campaign.fractions[0] if task.fraction is None else task.fraction
            overrides = campaign.overrides(task.setup, workload, fraction, task.replicate)
            if task.kind == "capacity":
                if capacity_path(experiment_app(root, overrides)).is_file():
                    continue
                estimate = campaign.probe_s + start
            else:
                if only is not None and not re.search(only, str(task)):
                    report.pending += 1
                    continue
                probe = run_experiment(experiment_app(root, overrides, stages=["workload"]), fns)  # no GPU: the workload
                if probe.point_key in collected:
                    continue
                n = _num_requests(root, probe.workload_id)
                estimate = n / float(probe.offered_qps or 1.0) + campaign.point_overhead_s + start
        if estimate > left:
            why = "more than a whole call: raise the budget" if estimate > budget_s else "for a later call"
            report.add(f"{task}: needs ~{estimate:.0f}s, {left:.0f}s left: {why}")
            report.pending += 1
            # A point that does not fit leaves the call to the smaller points after it; a bundle or a probe stops it
            # (the tasks after them need them).
            stop = task.kind != "point"
            continue
        t0 = time.monotonic()
        if task.kind == "bundle":
            path = fns.profile(cfg)
            write_archive(staged / "bundles" / f"{path.name}{ARCHIVE}", root, [path])
            report.add(f"{task}: {path.name} in {time.monotonic() - t0:.0f}s (estimated {estimate:.0f}s)")
        elif task.kind == "capacity":
            rec = run_experiment(experiment_app(root, overrides, stages=["workload"]), fns)
            cap = json.loads(capacity_path(experiment_app(root, overrides)).read_text())
            cap_file = capacity_path(experiment_app(root, overrides))
            write_archive(staged / "diagnostics" / f"capacity-{task.setup}-{workload}-{cap_file.stem}{ARCHIVE}", root,
                          [root / "real_runs" / cap["real_run"], cap_file])
            report.add(f"{task}: {rec.capacity_rps:.3f} requests/s in {time.monotonic() - t0:.0f}s")
        else:
            app = experiment_app(root, overrides, stages=["workload", "real"])
            rec = run_experiment(app, fns)
            # The point's record, capacity and real run; not its workload (~2 MB of prompt ids a point): the local
            # half regenerates it from the campaign's config, and its content-addressed id proves the bytes equal.
            write_archive(staged / "points" / f"{rec.point_key}{ARCHIVE}", root,
                          [root / "experiments" / f"{rec.point_key}.json", capacity_path(app),
                           root / "real_runs" / str(rec.real_run)])
            report.add(f"{task} ({rec.point_key}): {n} requests at {rec.offered_qps:.3f}/s, real run {rec.real_run} "
                       f"in {time.monotonic() - t0:.0f}s (estimated {estimate:.0f}s)")
        first = False
        _pack(staged, Path(out))
        report.write(Path(out))
    report.write(Path(out))
    return report


def _num_requests(root: Path, workload_id: str) -> int:
    meta = json.loads((root / "workloads" / workload_id / WORKLOAD_META).read_text())
    return int(meta["stats"]["num_requests"])


def _pack(staged: Path, out: Path) -> list[Path]:
    """The staged archives into ``out/pack-<i>.tar`` files of at most :data:`PACK_BYTES` each (by their paths under
    ``staged``), replacing the packs written before; an archive larger than that gets a pack of its own (and the
    device tool leaves it out: the log says so)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    for old in Path(out).glob("pack-*.tar"):
        old.unlink()
    files = sorted(p for p in staged.rglob("*") if p.is_file()) if staged.is_dir() else []
    packs: list[list[Path]] = []
    size = 0
    for f in files:
        n = f.stat().st_size
        if n > PACK_BYTES:
            log.warning("%s is %.1f MiB, over the %d MiB the device tool brings back", f.name, n / 2**20, PACK_BYTES // 2**20)
        if not packs or size + n > PACK_BYTES:
            packs.append([])
            size = 0
        packs[-1].append(f)
        size += n
    written = []
    for i, group in enumerate(packs):
        dest = Path(out) / f"pack-{i}.tar"
        with tarfile.open(dest, "w") as tar:
            for f in group:
                tar.add(f, arcname=str(f.relative_to(staged)))
        written.append(dest)
    return written


def plan_text(campaign: Campaign, capacity_rps: dict[tuple[str, str], float], num_requests: dict[str, int],
              budget_s: float) -> str:
    """The campaign's tasks packed into calls of ``budget_s`` as :func:`run_call` would (in order; a point that does
    not fit leaves room to the points after it, a bundle or a probe ends the call), from assumed capacities
    (requests/s): one line per call with its tasks and estimated seconds."""
    def estimate(task: Task) -> float:
        if task.kind == "bundle":
            return campaign.bundle_s
        if task.kind == "capacity":
            return campaign.probe_s
        assert task.workload is not None and task.fraction is not None
        return num_requests[task.workload] / (task.fraction * capacity_rps[(task.setup, task.workload)]) \
            + campaign.point_overhead_s

    remaining = list(campaign.tasks())
    calls: list[list[tuple[Task, float]]] = []
    while remaining:
        call: list[tuple[Task, float]] = []
        used = campaign.first_start_s
        for task in list(remaining):
            est = estimate(task)
            if used + est <= budget_s or not call:
                call.append((task, est))
                used += est
                remaining.remove(task)
            elif task.kind != "point":
                break
        calls.append(call)
    lines = []
    for i, call in enumerate(calls, 1):
        secs = campaign.first_start_s + sum(e for _, e in call)
        lines.append(f"call {i}: ~{secs / 60:.1f} min: " + "; ".join(str(t) for t, _ in call))
    total = sum(campaign.first_start_s + sum(e for _, e in call) for call in calls)
    lines.append(f"total: {len(calls)} calls, ~{total / 60:.0f} min of commands (each call also starts a machine and "
                 "installs the wheels: 1-2 min)")
    return "\n".join(lines)


# --- between calls -------------------------------------------------------------------------------------------


def collect(returned: Optional[Path], folder: Path, carry: Path, campaign: Optional[Campaign] = None) -> list[str]:
    """File a call's returned files (the device tool's ``files_at``) into the result folder: the packs' archives
    under ``points/``, ``bundles/``, ``diagnostics/``, the other files (the call's summary and log) under
    ``diagnostics/``; then refresh the carry (capacities, and the point keys and bundle ids collected) from the
    folder, each of ``campaign``'s capacities under the key today's code gives it (``rehome_capacities``).
    ``returned`` None: only the refresh (a new checkout's carry, from the committed folder)."""
    folder, carry = Path(folder), Path(carry)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    files = sorted(p for p in Path(returned).rglob("*") if p.is_file()) if returned is not None else []
    for src in files:
        if src.name.startswith("pack-") and src.suffix == ".tar":
            with tarfile.open(src) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        dest = _free_name(folder / m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                        moved.append(str(dest.relative_to(folder)))
        else:  # two calls collected within a second must not share a name: the later takes the next free one
            dest = _free_name(folder / "diagnostics" / f"{stamp}-{src.name}", src.read_bytes())
            moved.append(str(dest.relative_to(folder)))
    (carry / "capacity").mkdir(parents=True, exist_ok=True)
    done = set()
    for archive in archives(folder, "*"):
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith("capacity/") and m.name.endswith(".json"):
                    (carry / m.name).write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
        if archive.parent.name in ("points", "bundles"):
            done.add(archive_key(archive))
    (carry / COLLECTED).write_text("".join(f"{k}\n" for k in sorted(done)))
    if campaign is not None:
        rehome_capacities(campaign, folder, carry / "capacity")
    return moved


def rederive(campaign: Campaign, folder: Path, root: Path, carry: Path, setup: str, source: str) -> Path:
    """The setup's bundle as today's code derives it from the measurements of a bundle the folder holds (``source``:
    its id; ``bundle.rederive_bundle``: no device), filed into ``folder/bundles/`` and the carry refreshed, so that
    no call measures it again. For a change to the derivation alone, which moves every bundle id."""
    from gpu_simulate_test.experiment import default_stages
    from gpu_simulate_test.vidur_ext.profiler.bundle import rederive_bundle
    from gpu_simulate_test.vidur_ext.profiler.check import vidur_predict

    if setup not in campaign.setups:
        raise InputError(f"campaign {campaign.name} has no setup {setup!r} (setups: {', '.join(campaign.setups)})")
    archive = next((a for a in archives(folder, "bundles") if archive_key(a) == source), None)
    if archive is None:
        raise InputError(f"{folder}/bundles holds no bundle {source}")
    root = Path(root)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    cfg = bundle_app(campaign, root, setup, default_stages())
    path = rederive_bundle(cfg, Path(cfg.paths.profiling) / source, vidur_predict(cfg)).path
    dest = Path(folder) / "bundles" / f"{path.name}{ARCHIVE}"
    if dest.exists():
        raise InputError(f"{dest} exists: the folder holds today's bundle of setup {setup} already")
    write_archive(dest, root, [path])
    collect(None, folder, carry, campaign)
    return dest


def rehome_capacities(campaign: Campaign, folder: Path, capacity_dir: Path) -> list[str]:
    """Each setup and workload's measured capacity under the key today's code computes (``capacity_path``), where the
    archives hold it under another: until 2026-12-03 a trace file's path entered the key, so the same capacity had
    another key on another checkout. The capacity is the one of the campaign's probe archive of that setup and
    workload (``diagnostics/capacity-<setup>-<workload>-<key>``) whose key an archived capacity file has; none or
    several: left as it is (the point then says its capacity is missing). Returns the keys it wrote."""
    from gpu_simulate_test.experiment import capacity_path

    written = []
    for setup in campaign.setups:
        for workload in campaign.workloads_of(setup):
            app = experiment_app(Path("."), campaign.overrides(setup, workload, campaign.fractions[0], 0))
            target = Path(capacity_dir) / capacity_path(app).name
            if target.is_file():
                continue
            probes = [archive_key(a).removeprefix(f"capacity-{setup}-{workload}-")
                      for a in archives(folder, "diagnostics") if a.name.startswith(f"capacity-{setup}-{workload}-")]
            found = [Path(capacity_dir) / f"{k}.json" for k in probes if (Path(capacity_dir) / f"{k}.json").is_file()]
            if len(found) == 1:
                shutil.copyfile(found[0], target)
                log.info("capacity %s %s: archived as %s, filed as %s", setup, workload, found[0].stem, target.stem)
                written.append(target.stem)
    return written


def _packed_as() -> str:
    """What a call packs: xz (a real run's tables at about half their gzip size), or gzip where this Python was built
    without lzma (the GPU host's image is not checked for it). Folders of either are read alike."""
    try:
        import lzma  # noqa: F401
    except ImportError:
        return ".tar.gz"
    return ".tar.xz"


ARCHIVE = _packed_as()


def archives(folder: Path, sub: str) -> list[Path]:
    """The archives (``ARCHIVE_MODES``' names) in ``folder/sub`` (a glob: ``*`` for every subfolder), sorted."""
    return sorted(p for p in Path(folder).glob(f"{sub}/*") if p.is_file() and p.name.endswith(tuple(ARCHIVE_MODES)))


def archive_key(archive: Path) -> str:
    """An archive's name without its archive suffix: a point key, a bundle id."""
    return next(archive.name.removesuffix(x) for x in ARCHIVE_MODES if archive.name.endswith(x))


def _free_name(dest: Path, data: bytes) -> Path:
    """Write ``data`` at ``dest``, or where ``dest`` already holds other bytes, at ``<stem>-2``, ``-3``, ...: a
    collected file never replaces another (content-keyed archives, the same bytes again, keep their name)."""
    stem, suffix = dest.name.split(".", 1) if "." in dest.name else (dest.name, "")
    n, path = 1, dest
    while path.exists() and path.read_bytes() != data:
        n += 1
        path = dest.with_name(f"{stem}-{n}" + (f".{suffix}" if suffix else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the local half ------------------------------------------------------------------------------------------


def _existing_bundle(cfg: Any, filed: Optional[str] = None) -> Path:
    """The local half's profile stage: the bundle the points name, from the archives; never measured here. That is
    the id today's profiler gives the request, else ``filed`` (the bundle the folder's last publish simulated the
    setup with, :func:`filed_bundles`) if it was built for the same request on the same engine (where its meta
    records one): a profiler change since (how the bundle is timed, in every id) must not stop a published folder
    from reproducing."""
    from gpu_simulate_test.engine import id_basis
    from gpu_simulate_test.io.meta import read_meta
    from gpu_simulate_test.io.outputs import PROFILE_META
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id, request_differs
    from gpu_simulate_test.vidur_ext.profiling_root import BUNDLE_KIND

    profiling = Path(cfg.paths.profiling)
    path = profiling / bundle_id(cfg)
    if path.is_dir():
        return path
    if filed is not None and (profiling / filed).is_dir():
        meta = read_meta(profiling / filed / PROFILE_META, BUNDLE_KIND)
        basis = id_basis(cfg.backend.name)  # the engine the points ran on; bundles built before 2026-12-04 lack it
        if any(k in meta and meta[k] != v for k, v in basis.items()):
            raise InputError(f"bundle {filed}, which tables/bundle_test.csv names, was built on another engine "
                             f"({', '.join(f'{k} {meta.get(k)}' for k in basis)}) than the points ran on "
                             f"({', '.join(f'{k} {v}' for k, v in basis.items())})")
        differ = request_differs(cfg, meta)
        if differ:
            raise InputError(f"bundle {filed}, which tables/bundle_test.csv names, was built for another request "
                             f"({', '.join(differ)} differ) than today's {path.name}; collect the bundle of this one")
        log.info("bundle %s: today's profiler files this request as %s, not among the archives; the folder's %s",
                 filed, path.name, filed)
        return profiling / filed
    have = sorted(p.name for p in profiling.glob("*")) if profiling.is_dir() else []
    raise InputError(f"bundle {path.name} is not among the archives (bundles/: {', '.join(have) or 'none'}); "
                     "collect the call that built it into bundles/")


def filed_bundles(folder: Path) -> dict[str, str]:
    """Each setup's bundle as the folder's last publish recorded it (``tables/bundle_test.csv``: ``setup``,
    ``bundle_id``); empty before a first publish."""
    import pandas as pd

    table = Path(folder) / "tables" / "bundle_test.csv"
    if not table.is_file():
        return {}
    pairs = pd.read_csv(table)
    if not {"setup", "bundle_id"} <= set(pairs.columns):
        raise InputError(f"{table}: no setup and bundle_id columns (columns: {', '.join(map(str, pairs.columns))})")
    pairs = pairs[["setup", "bundle_id"]].drop_duplicates()
    twice = pairs["setup"][pairs["setup"].duplicated()].tolist()
    if twice:
        raise InputError(f"{table}: setup(s) {', '.join(map(str, twice))} name more than one bundle")
    return dict(zip(pairs["setup"].astype(str), pairs["bundle_id"].astype(str)))


class NotMeasuredError(InputError):
    """A real run or capacity probe the local half needs is not among the archives (it never measures)."""


def _never_measure(cfg: Any) -> Path:
    """The local half's real stage: a real run or a capacity probe missing from the archives is an error here."""
    raise NotMeasuredError(f"workload {cfg.workload_id}: its real run (or its setup's capacity probe) is not among the "
                     "archives, and the local half never measures; collect the call that ran it")


def archived_engine_code(folder: Path) -> Optional[str]:
    """The native engine the folder's points were measured with (each real run's ``backend.engine_code``), so that
    ``publish`` finds them and their bundles by the keys they were filed under (``engine.measured_with``); None when
    no point archive names one. Points of two engines in one folder are an error: one result, one engine."""
    codes: dict[str, list[str]] = {}
    for archive in archives(folder, "points"):
        with tarfile.open(archive) as tar:
            for member in tar:  # in stream order, up to the run's meta: the token table after it stays packed
                if member.name.endswith("/run_meta.json"):
                    code = (json.load(tar.extractfile(member)).get("backend") or {}).get("engine_code")
                    if code:
                        codes.setdefault(str(code), []).append(archive.name)
                    break
    if len(codes) > 1:
        raise InputError(f"{folder}/points: real runs of {len(codes)} engines ("
                         + "; ".join(f"{c}: {len(a)} archives, e.g. {a[0]}" for c, a in sorted(codes.items()))
                         + "); a result folder holds one engine's points")
    return next(iter(codes), None)


def unpack(folder: Path, root: Path) -> None:
    """Every archive of the result folder (``bundles/``, then ``points/``) into the artifact root."""
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives(folder, "bundles") + archives(folder, "points"):
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")


def compare_points(campaign: Campaign, root: Path, stages: Any = None,
                   filed: Optional[dict[str, str]] = None) -> list["ComparedPoint"]:
    """Simulate and compare the first replicate of every point whose runs are under ``root``, and compare the second
    replicate with the first; points without a real run are left out (and said so). ``filed``: setup -> the bundle a
    former publish simulated it with, used where today's profiler names one not among the archives."""
    from gpu_simulate_test.analysis.publish import ComparedPoint
    from gpu_simulate_test.experiment import default_stages, run_experiment

    base = replace(stages or default_stages(), real=_never_measure)
    out = []
    for setup in campaign.setups:
        fns = replace(base, profile=partial(_existing_bundle, filed=(filed or {}).get(setup)))
        for workload in campaign.workloads_of(setup):
            for fraction in campaign.fractions:
                recs = []
                try:
                    for r in range(campaign.replicates):
                        app = experiment_app(root, campaign.overrides(setup, workload, fraction, r),
                                             stages=["workload"])
                        recs.append(run_experiment(app, fns))
                except NotMeasuredError as exc:  # a partial campaign: its capacity is not measured yet
                    log.warning("%s %s %g: left out: %s", setup, workload, fraction, exc)
                    continue
                if any(rec.real_run is None for rec in recs):
                    log.warning("%s %s %g: %d of %d replicates measured; left out", setup, workload, fraction,
                                sum(rec.real_run is not None for rec in recs), len(recs))
                    continue
                app = experiment_app(root, campaign.overrides(setup, workload, fraction, 0),
                                     stages=["workload", "profile", "sim", "compare"], accept_bundle=True)
                first = run_experiment(app, fns)
                spread = None
                if len(recs) > 1:
                    spread = _real_vs_real(root, str(recs[0].real_run), str(recs[1].real_run))
                out.append(ComparedPoint(setup, workload, fraction, float(first.offered_qps), float(first.capacity_rps),
                                         tuple(r.point_key for r in recs), tuple(str(r.real_run) for r in recs),
                                         str(first.bundle_id), root / "comparisons" / str(first.comparison_id), spread))
    return out


def _real_vs_real(root: Path, first: str, second: str) -> Path:
    """compare-runs of the second real run against the first (the spread), reused while it exists: its id follows the
    two runs' ids, and real runs come from the archives unchanged."""
    from gpu_simulate_test.analysis.compare import compare_runs, comparison_id
    from gpu_simulate_test.io.outputs import COMPARISON_META

    done = root / "comparisons" / comparison_id(first, second)
    if (done / COMPARISON_META).is_file():
        return done
    return compare_runs(compose_app("compare_runs", [f"real_run={first}", f"sim_run={root / 'real_runs' / second}",
                                                     f"paths.root={root}"]))


def publish(campaign: Campaign, folder: Path, root: Path, *, title: str, reproduce: str, stages: Any = None) -> list[str]:
    """The local half: unpack the folder's archives into ``root``, compare every point, and (re)write the folder's
    ``tables/``, ``figs/``, ``summary.md`` and ``MANIFEST.csv``; returns what it wrote. Points and bundles are found
    by the keys of the engine the points ran on (``archived_engine_code``), not of today's."""
    folder, root = Path(folder), Path(root)
    code = archived_engine_code(folder)
    with measured_with(code) if code else nullcontext():
        return _publish(campaign, folder, root, title=title, reproduce=reproduce, stages=stages)


def _publish(campaign: Campaign, folder: Path, root: Path, *, title: str, reproduce: str, stages: Any) -> list[str]:
    from gpu_simulate_test.analysis import publish as pub
    from gpu_simulate_test.vidur_ext.verdict import bundle_verdict

    unpack(folder, root)
    rehome_capacities(campaign, folder, root / "capacity")
    points = compare_points(campaign, root, stages, filed=filed_bundles(folder))
    if not points:
        raise InputError(f"{folder}: no point of campaign {campaign.name} has its real runs in points/; nothing to publish")
    for sub in ("tables", "figs"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
    sweep, iters, runs = pub.sweep_table(points), pub.iteration_table(points), pub.points_table(points, root)
    kinds, decode_kv = pub.iteration_kinds_table(points), pub.decode_kv_table(points, root)
    chunks = pub.prefill_chunks_table(points, root)
    apps = {p.point_keys[0]: experiment_app(root, campaign.overrides(p.setup, p.workload, p.fraction, 0)) for p in points}
    replay = pub.replay_table(points, root, apps)
    bundles = {p.setup: p.bundle_id for p in points}
    test, validation, metas = pub.bundle_tables(root, bundles)
    written = {"tables/sweep.csv": sweep, "tables/iterations.csv": iters, "tables/iteration_kinds.csv": kinds,
               "tables/decode_kv.csv": decode_kv, "tables/prefill_chunks.csv": chunks, "tables/runs.csv": runs,
               "tables/bundle_test.csv": test, "tables/replay.csv": replay}
    if not validation.empty:
        written["tables/bundle_validation.csv"] = validation
    for name, df in written.items():
        df.to_csv(folder / name, index=False, float_format="%.10g")
    figs = [pub.plot_errors(folder / "figs", sweep, s, w) for (s, w) in sweep.groupby(["setup", "workload"], sort=False).groups]
    figs += [pub.plot_bundle_test(folder / "figs", test, s) for s in bundles]
    verdicts = {s: bundle_verdict(m).line() for s, m in metas.items()}
    (folder / SUMMARY).write_text(pub.summary_text(title, sweep, iters, runs, test, verdicts, reproduce, kinds,
                                                   decode_kv, chunks, replay))
    pub.write_manifest(folder, _describe(folder, points, bundles, written, figs))
    return [SUMMARY, "MANIFEST.csv", *written, *(f"figs/{f.name}" for f in figs)]


def _describe(folder: Path, points: list[Any], bundles: dict[str, str], tables: dict[str, Any], figs: list[Path]) -> dict[str, dict[str, str]]:
    """MANIFEST.csv rows: what each file of the folder is."""
    from gpu_simulate_test.analysis.publish import archive_date

    dates = [archive_date(a) for a in archives(folder, "*")]
    today = max(dates) if dates else time.strftime("%Y-%m-%d")  # the files made from the archives: their newest date
    by_key = {k: (p, r) for p in points for r, k in enumerate(p.point_keys)}
    rows: dict[str, dict[str, str]] = {}
    for archive in archives(folder, "points"):
        key = archive_key(archive)
        p, r = by_key.get(key, (None, None))
        what = (f"experiment point {key}: {p.workload}, replicate {r}: record, capacity and real run (the workload is "
                "regenerated from the campaign's config)"
                if p is not None else f"experiment point {key}: not part of the published sweep")
        rows[f"points/{archive.name}"] = {"kind": "point", "backend": p.setup if p else "", "date": archive_date(archive),
                                          "load": f"{p.fraction:.0%} of capacity ({p.offered_qps:.4g} req/s)" if p else "",
                                          "what": what}
    for archive in archives(folder, "bundles"):
        setup = next((s for s, b in bundles.items() if archive_key(archive) == b), "")
        rows[f"bundles/{archive.name}"] = {"kind": "bundle", "backend": setup, "load": "", "date": archive_date(archive),
                                           "what": f"the bundle {archive_key(archive)}" if setup
                                           else "bundle or capacity probes of the campaign (not simulated with)"}
    for f in sorted(folder.glob("diagnostics/*")):
        probe = f.name.startswith("capacity-") and f.name.endswith(tuple(ARCHIVE_MODES))
        rows[f"diagnostics/{f.name}"] = {
            "kind": "diagnostic", "backend": f.name.split("-")[1] if probe else "", "load": "",
            "date": archive_date(f) if probe else today,
            "what": "a capacity probe: its real run (all requests at once) and capacity file" if probe
            else "a call's summary or console as it came back (collect)"}
    for name in tables:
        rows[name] = {"kind": "table", "backend": "all", "load": "", "date": today,
                      "what": f"{name}: made by the publish command from the archives"}
    for fig in figs:
        rows[f"figs/{fig.name}"] = {"kind": "figure", "backend": "all", "load": "", "date": today,
                                    "what": "made by the publish command from the archives"}
    rows[SUMMARY] = {"kind": "summary", "backend": "all", "load": "", "date": today,
                          "what": "acceptance checks, headline tables, bundles' test shapes, engine facts, reproduce command"}
    if (folder / README).is_file():
        rows[README] = {"kind": "readme", "backend": "all", "load": "", "date": today,
                        "what": "the findings, written by hand from summary.md and the tables"}
    return rows
