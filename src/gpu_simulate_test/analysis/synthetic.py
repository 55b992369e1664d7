"""Synthetic run pairs of known distortion, for the acceptance tests and the benchmark.

A base run serves one request at a time with no queueing (arrivals far enough apart), so its
per-token iterations are well defined; distortions (scale, shift, early stop) then change every
latency by a known amount, and the comparison must recover exactly that amount.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.io.meta import build_meta
from gpu_simulate_test.io.rundir import atomic_dir
from gpu_simulate_test.io.runs import write_run_meta, write_run_tables


@dataclass(frozen=True)
class SyntheticRun:
    """Token times of ``n`` requests: request ``i`` owns ``times_ns[offsets[i]:offsets[i+1]]``."""

    arrival_ns: np.ndarray
    counts: np.ndarray
    times_ns: np.ndarray
    num_prefill: np.ndarray
    num_decode: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)))

    def _owner_arrival(self) -> np.ndarray:
        return np.repeat(self.arrival_ns, self.counts)

    def scaled(self, factor: float) -> "SyntheticRun":
        """Every time since arrival multiplied by ``factor`` (rounded to the ns)."""
        a = self._owner_arrival()
        return replace(self, times_ns=a + np.rint((self.times_ns - a) * factor).astype(np.int64))

    def shifted(self, shift_ns: int) -> "SyntheticRun":
        """Every token later by ``shift_ns``: TTFT and E2E grow by it, TPOT and ITL do not change."""
        return replace(self, times_ns=self.times_ns + int(shift_ns))

    def truncated(self, keep: np.ndarray) -> "SyntheticRun":
        """Early stop: request ``i`` keeps its first ``keep[i]`` tokens (``num_decode`` unchanged)."""
        keep = np.minimum(np.asarray(keep, dtype=np.int64), self.counts)
        off = self.offsets[:-1]
        within = np.arange(int(keep.sum())) - np.repeat(np.concatenate(([0], np.cumsum(keep)[:-1])), keep)
        return replace(self, counts=keep, times_ns=self.times_ns[np.repeat(off, keep) + within])

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """request_metrics and token_metrics frames, computed as io.runs.tables_from_records does."""
        off, n = self.offsets, self.counts
        first, last = self.times_ns[off[:-1]], self.times_ns[off[1:] - 1]
        tpot = pd.array(np.rint((last - first) / np.maximum(n - 1, 1)).astype(np.int64), dtype="Int64")
        tpot[n <= 1] = pd.NA
        rid = np.arange(len(n), dtype=np.int64)
        requests = pd.DataFrame({
            "request_id": rid, "arrival_time_ns": self.arrival_ns, "dispatch_time_ns": self.arrival_ns,
            "first_token_time_ns": first, "completion_time_ns": last, "num_prefill_tokens": self.num_prefill,
            "num_decode_tokens": self.num_decode, "num_decode_tokens_actual": n, "ttft_ns": first - self.arrival_ns,
            "e2e_ns": last - self.arrival_ns, "tpot_ns": tpot,
        })
        tokens = pd.DataFrame({
            "request_id": np.repeat(rid, n),
            "token_index": np.arange(len(self.times_ns)) - np.repeat(off[:-1], n),
            "token_time_ns": self.times_ns,
        })
        return requests, tokens

    def iterations(self) -> pd.DataFrame:
        """One iteration per token (one request at a time): the prefill step, then one decode step per token."""
        off, n = self.offsets, self.counts
        start = np.empty_like(self.times_ns)
        start[1:] = self.times_ns[:-1]
        start[off[:-1]] = self.arrival_ns
        is_first = np.zeros(len(self.times_ns), dtype=bool)
        is_first[off[:-1]] = True
        rid = np.repeat(np.arange(len(n)), n)
        prefill = np.where(is_first, np.repeat(self.num_prefill, n), 0)
        decode = np.where(is_first, 0, 1)
        return pd.DataFrame({
            "iteration_id": np.arange(len(start)), "start_time_ns": start, "end_time_ns": self.times_ns,
            "batch_size": 1, "num_prefill_tokens": prefill, "num_decode_tokens": decode,
            "requests": [f"r{r}:{p + d}" for r, p, d in zip(rid.tolist(), prefill.tolist(), decode.tolist())],
        })


def sequential_run(num_requests: int, decode_tokens: np.ndarray | int, *, seed: int = 0,
                   prefill_ns: tuple[int, int] = (5_000_000, 20_000_000), itl_ns: tuple[int, int] = (2_000_000, 8_000_000),
                   slack: float = 2.0) -> SyntheticRun:
    """Requests served one at a time, arrivals spaced ``slack`` x the longest request apart (no queueing)."""
    rng = np.random.default_rng(seed)
    counts = np.broadcast_to(np.asarray(decode_tokens, dtype=np.int64), (num_requests,)).copy()
    gaps = rng.integers(*itl_ns, size=int(counts.sum()))
    off = np.concatenate(([0], np.cumsum(counts)))
    gaps[off[:-1]] = rng.integers(*prefill_ns, size=num_requests)  # the first "gap" is the prefill
    since_arrival = np.cumsum(gaps) - np.repeat(np.concatenate(([0], np.cumsum(gaps)[off[1:-1] - 1])), counts)
    longest = int(since_arrival[off[1:] - 1].max())
    arrival = np.arange(num_requests, dtype=np.int64) * int(slack * longest + 1)
    prefill = rng.integers(16, 512, size=num_requests)
    return SyntheticRun(arrival, counts, np.repeat(arrival, counts) + since_arrival, prefill, counts.copy())


def write_run(root: Path, run_id: str, kind: str, workload_id: str, run: SyntheticRun, *, with_iterations: bool = True,
              status: str = "complete", config: Optional[dict[str, Any]] = None) -> Path:
    """Write ``run`` as a run directory ``root/run_id`` of ``kind`` (real_run or vidur_run)."""
    requests, tokens = run.frames()
    cfg = config or {"model": {"name": "qwen3-tiny"}, "hardware": {"name": "cpu"}, "backend": {"name": "hf-generate"}}
    with atomic_dir(Path(root) / run_id) as tmp:
        write_run_tables(tmp, requests, tokens, run.iterations() if with_iterations else None)
        write_run_meta(tmp, build_meta(kind=kind, id=run_id, config=cfg, inputs={"workload_id": workload_id}, status=status))
    return Path(root) / run_id
