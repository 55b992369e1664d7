"""The ``paths`` group: where every stage reads and writes (``tmp/`` by default, git-ignored)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PathsConfig:
    """Roots of the artifact tree; relative paths are taken from the current directory."""

    root: str = "tmp"
    workloads: str = "${.root}/workloads"
    real_runs: str = "${.root}/real_runs"
    vidur_runs: str = "${.root}/vidur_runs"
    profiling: str = "${.root}/profiling"
    comparisons: str = "${.root}/comparisons"
    cache: str = "${.root}/cache"
