"""Was the host busy while we measured? CPU time of other processes and other processes on the GPU.

A measurement on a shared host can be distorted by another tenant without any error: a CPU bundle built beside a
busy neighbour measured a 141 ms decode step where a quiet build measures 3 ms. So every measurement samples, at its
start and end:

- all CPUs' busy time (``/proc/stat``: user, nice, system, irq, softirq, steal) and this process's own CPU time
  (its threads, live descendants and reaped children, through psutil); other processes' share is the difference.
  More than :data:`BUSY_OTHER_CORES` cores on average marks the measurement busy;
- on a GPU, the compute processes ``nvidia-smi`` lists on that GPU (where the container lets it see them); any
  process that is not ours marks it busy. Inside a container nvidia-smi may list the host's pids, none of them ours:
  then one of the processes is taken to be this one, and any other marks it busy.

The record (:class:`HostLoad`) goes into the run's or bundle's meta as ``host_load``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import psutil

BUSY_OTHER_CORES = 0.5  # other processes' CPU time above this many cores, on average over the measurement, is busy
PROC_STAT = "/proc/stat"
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest time is already inside user)


def read_proc_stat(path: str = PROC_STAT) -> Optional[float]:
    """Seconds of CPU time all CPUs have been busy since boot; None where ``/proc/stat`` cannot be read."""
    try:
        with open(path) as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(v) for v in first[1:]]
    return sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks)) / os.sysconf("SC_CLK_TCK")


def own_cpu_s(proc: Optional[psutil.Process] = None) -> float:
    """CPU seconds of this process, its threads, its live descendants and the children it has reaped."""
    proc = proc or psutil.Process()
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.Error:  # ended between the listing and the read: counted once reaped
            continue
        total += c.user + c.system + c.children_user + c.children_system  # a child's reaped children too
    return total


def _own_pids() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}


def _holds_cuda_context() -> bool:
    """Whether this process has initialised CUDA (and so shows in nvidia-smi's list itself). Never imports torch."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a broken CUDA setup holds no context
        return False


def gpu_processes(gpu_uuid: str) -> Optional[list[dict[str, Any]]]:
    """Compute processes on the GPU ``gpu_uuid`` as nvidia-smi lists them, or None where it cannot tell."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=gpu_uuid,pid,process_name,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    procs = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0] == gpu_uuid and parts[1].isdigit():
            procs.append({"pid": int(parts[1]), "name": parts[2], "used_memory_mib": parts[3] if len(parts) > 3 else None})
    return procs


@dataclass
class HostLoad:
    """What else ran on the host during one measurement (``host_load`` in a meta).

    ``busy`` is None where nothing could be read (no ``/proc/stat``), else whether other processes used more than
    ``threshold_cores`` on average or any other process ran on the GPU.
    """

    wall_s: float
    cpu_count: int
    threshold_cores: float
    own_cpu_cores: Optional[float]
    other_cpu_cores: Optional[float]
    gpu: Optional[str] = None
    other_gpu_processes: Optional[list[dict[str, Any]]] = None  # None: not visible (no GPU, or nvidia-smi hides it)
    busy: Optional[bool] = None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BusyProbe:
    """Samples the host at :meth:`start` and :meth:`stop` of a measurement; :meth:`stop` returns its :class:`HostLoad`.

    ``stat``, ``own`` (CPU seconds since an arbitrary origin) and ``clock`` are injectable so that tests can script
    a host.
    """

    def __init__(self, gpu_uuid: Optional[str] = None, *, stat: Callable[[], Optional[float]] = read_proc_stat,
                 own: Callable[[], float] = own_cpu_s, clock: Callable[[], float] = time.monotonic,
                 threshold_cores: float = BUSY_OTHER_CORES) -> None:
        self.gpu_uuid = gpu_uuid
        self._stat, self._own, self._clock = stat, own, clock
        self.threshold = threshold_cores
        self._start: Optional[tuple[float, Optional[float], float]] = None
        self._gpu_seen: dict[int, dict[str, Any]] = {}
        self._foreign: list[dict[str, Any]] = []  # the processes besides this one, where pids cannot be matched
        self._gpu_visible = gpu_uuid is not None

    def _sample_gpu(self) -> None:
        if not self._gpu_visible or self.gpu_uuid is None:
            return
        procs = gpu_processes(self.gpu_uuid)
        if procs is None:
            self._gpu_visible = False
            return
        ours = _own_pids()
        if procs and _holds_cuda_context() and not any(p["pid"] in ours for p in procs):
            # Another PID namespace's pids (a container): one of these processes is this one, which cannot be told.
            if len(procs) > 1 + len(self._foreign):
                self._foreign = procs[1:]
            return
        for p in procs:
            if p["pid"] not in ours:
                self._gpu_seen[p["pid"]] = p

    def start(self) -> "BusyProbe":
        self._start = (self._clock(), self._stat(), self._own())
        self._sample_gpu()
        return self

    def stop(self) -> HostLoad:
        if self._start is None:
            raise RuntimeError("BusyProbe.stop() before start()")
        t1, stat1, own1 = self._clock(), self._stat(), self._own()
        self._sample_gpu()
        t0, stat0, own0 = self._start
        wall = max(t1 - t0, 1e-9)
        own_cores = (own1 - own0) / wall
        other = None if stat0 is None or stat1 is None else max(0.0, (stat1 - stat0) / wall - own_cores)
        load = HostLoad(wall_s=round(wall, 3), cpu_count=os.cpu_count() or 1, threshold_cores=self.threshold,
                        own_cpu_cores=round(own_cores, 3), other_cpu_cores=None if other is None else round(other, 3),
                        gpu=self.gpu_uuid,
                        other_gpu_processes=(sorted(self._gpu_seen.values(), key=lambda p: p["pid"]) + self._foreign)
                        if self._gpu_visible else None)
        if other is not None and other > self.threshold:
            load.reasons.append(f"other processes used {other:.2f} CPU cores on average (more than {self.threshold:g})")
        if self._gpu_seen:
            names = ", ".join(f"pid {p['pid']} ({p['name']})" for p in sorted(self._gpu_seen.values(), key=lambda p: p["pid"]))
            load.reasons.append(f"other processes on {self.gpu_uuid}: {names}")
        if self._foreign:
            load.reasons.append(f"{len(self._foreign)} other process(es) on {self.gpu_uuid} besides this one (nvidia-smi "
                                "lists another PID namespace's pids, so which is which cannot be told)")
        load.busy = bool(load.reasons) if other is not None or load.other_gpu_processes is not None else None
        return load
