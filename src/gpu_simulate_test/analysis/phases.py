"""Per-phase comparison: a workload made of phases (``workload.arrival.phases``, e.g. 5 then 10 requests/s) gets one
headline per phase as well as the whole. Its ``workload_meta.json`` lists each phase's request ids (requests are
numbered in arrival order), so a request's phase is where it was sent, not where it finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.align import PairedRuns
from gpu_simulate_test.analysis.metrics import metric_values
from gpu_simulate_test.analysis.tables import stats_and_distribution
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import WORKLOAD_META


def workload_phases(workloads_root: Path, workload_id: str) -> list[dict[str, Any]]:
    """The phases the workload's meta lists; none when it has fewer than two or is not on this machine."""
    path = Path(workloads_root) / workload_id / WORKLOAD_META
    phases = list(read_meta(path).get("phases") or []) if path.is_file() else []
    return phases if len(phases) > 1 else []


def phase_stats(pair: PairedRuns, phases: list[dict[str, Any]],
                percentiles: list[float]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``phase_stats.csv`` (stats.csv per phase) and each phase's description with its compared requests."""
    frames, described = [], []
    for ph in phases:
        first = int(ph["first_request_id"])
        keep = (pair.request_ids >= first) & (pair.request_ids < first + int(ph["num_requests"]))
        stats, _ = stats_and_distribution(metric_values(pair.subset(keep)), percentiles)
        frames.append(stats.assign(phase=int(ph["phase"])))
        described.append({**ph, "requests_compared": int(np.count_nonzero(keep))})
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["phase"])
    return table[["phase", *(c for c in table.columns if c != "phase")]], described
