"""Load a real and a simulated run, check that they can be compared, and pair their requests.

Pairing is where early stop is handled: each request's token series is cut to the tokens that
both runs produced (normally the real run's ``num_decode_tokens_actual``), so TTFT, TPOT, E2E
and ITL are computed over the same tokens on both sides. Everything is vectorised over the token
arrays; no per-request Python loop. A run known per request only (no ``token_metrics.csv``) pairs
by its first and last token times; it cannot be cut, and ITL cannot be computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.runs import RunData, load_run, resolve_dir


@dataclass(frozen=True)
class TokenSeries:
    """One run's tokens for the paired requests: the first and last kept token's time and how many were kept; with
    token times, every kept token's too (request ``i`` owns ``times_ns[offsets[i]:offsets[i+1]]``)."""

    arrival_ns: np.ndarray  # (n,) int64
    first_ns: np.ndarray  # (n,) int64
    last_ns: np.ndarray  # (n,) int64
    counts: np.ndarray  # (n,) int64, tokens kept per request (>= 1)
    times_ns: Optional[np.ndarray]  # (sum(counts),) int64; None for a run with per-request results only

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)))

    @property
    def has_token_times(self) -> bool:
        return self.times_ns is not None


@dataclass(frozen=True)
class PairedRuns:
    """Both runs restricted to the requests finished in both, token series cut to a common length."""

    real: RunData
    sim: RunData
    request_ids: np.ndarray  # (n,) sorted
    real_tokens: TokenSeries
    sim_tokens: TokenSeries
    real_counts_full: np.ndarray  # tokens each run produced before truncation
    sim_counts_full: np.ndarray
    left_out_real: int  # requests finished only in the real run (allow_incomplete)
    left_out_sim: int

    @property
    def truncated_sim(self) -> int:
        """Requests whose simulated series was cut to the real run's (early-stopped) length."""
        return int((self.sim_counts_full > self.real_counts_full).sum())

    @property
    def truncated_real(self) -> int:
        """Requests whose real series was cut because the simulation produced fewer tokens (unusual)."""
        return int((self.real_counts_full > self.sim_counts_full).sum())

    @property
    def arrival_mismatches(self) -> int:
        return int((self.real_tokens.arrival_ns != self.sim_tokens.arrival_ns).sum())

    def subset(self, keep: np.ndarray) -> "PairedRuns":
        """The pairs where boolean ``keep`` holds (e.g. one phase's requests); nothing is left out of either run."""
        return replace(self, request_ids=self.request_ids[keep], real_tokens=_take(self.real_tokens, keep),
                       sim_tokens=_take(self.sim_tokens, keep), real_counts_full=self.real_counts_full[keep],
                       sim_counts_full=self.sim_counts_full[keep], left_out_real=0, left_out_sim=0)


def _take(ts: TokenSeries, keep: np.ndarray) -> TokenSeries:
    times = None if ts.times_ns is None else _gather(ts.times_ns, ts.offsets[:-1][keep], ts.counts[keep])
    return TokenSeries(ts.arrival_ns[keep], ts.first_ns[keep], ts.last_ns[keep], ts.counts[keep], times)


def load_pair(real_root: Path, sim_root: Path, real_run: str, sim_run: str, *, allow_incomplete: bool) -> PairedRuns:
    """Resolve, load and check both runs, then pair them (see the module docstring)."""
    if not real_run or not sim_run:
        raise InputError("compare-runs needs real_run=<id or dir> and sim_run=<id or dir>")
    real = load_run(resolve_dir(real_root, real_run, "real run"))
    sim = load_run(resolve_dir(sim_root, sim_run, "simulated run"))
    check_comparable(real, sim, allow_incomplete=allow_incomplete)
    return pair_runs(real, sim)


def check_comparable(real: RunData, sim: RunData, *, allow_incomplete: bool) -> None:
    """Same workload, and complete runs unless the user allows otherwise."""
    if real.workload_id != sim.workload_id:
        raise InputError(
            f"real run {real.id!r} replayed workload {real.workload_id!r} but simulated run {sim.id!r} "
            f"simulated workload {sim.workload_id!r}; compare runs of the same workload"
        )
    for run, what in ((real, "real run"), (sim, "simulated run")):
        if not run.complete and not allow_incomplete:
            raise InputError(
                f"{what} {run.id!r} ({run.path}) is marked incomplete ({len(run.requests)} requests finished); "
                "pass allow_incomplete=true to compare only the requests finished in both runs"
            )


def _blocks(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(request ids sorted, start row of each one's tokens, its token count); without token rows, the start is -1
    and the count is ``num_decode_tokens_actual``."""
    if run.tokens is None:
        req = run.requests.sort_values("request_id", kind="stable")
        ids = req["request_id"].to_numpy(np.int64)
        return ids, np.full(len(ids), -1, dtype=np.int64), req["num_decode_tokens_actual"].to_numpy(np.int64)
    rid = run.tokens["request_id"].to_numpy(np.int64)
    idx = run.tokens["token_index"].to_numpy(np.int64)
    starts = np.flatnonzero(idx == 0)  # each request's rows are contiguous and start at index 0 (schema)
    counts = np.diff(np.append(starts, len(idx)))
    ids = rid[starts]
    order = np.argsort(ids, kind="stable")
    return ids[order], starts[order], counts[order]


def _gather(times: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``times[starts[i] : starts[i] + counts[i]]`` for every i, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    within = np.arange(total, dtype=np.int64) - np.repeat(offsets, counts)
    return times[np.repeat(starts, counts) + within]


def _series(run: RunData, req: pd.DataFrame, starts: np.ndarray, full: np.ndarray, keep: np.ndarray,
            other: RunData) -> TokenSeries:
    """``run``'s series of the paired requests (``req``: its request rows, in pairing order) cut to ``keep`` tokens."""
    arrival = req["arrival_time_ns"].to_numpy(np.int64)
    if run.tokens is None:
        cut = keep < full
        if cut.any():
            rid = int(req.index[int(np.argmax(cut))])
            raise ArtifactError(
                f"request {rid}: run {run.id!r} has per-request results only, so its {int(full[cut][0])} tokens cannot be "
                f"cut to the {int(keep[cut][0])} that run {other.id!r} produced; compare it with a run of the full outputs"
            )
        return TokenSeries(arrival, req["first_token_time_ns"].to_numpy(np.int64),
                           req["completion_time_ns"].to_numpy(np.int64), keep, None)
    times = _gather(run.tokens["token_time_ns"].to_numpy(np.int64), starts, keep)
    ends = np.cumsum(keep)
    return TokenSeries(arrival, times[ends - keep], times[ends - 1], keep, times)


def pair_runs(real: RunData, sim: RunData) -> PairedRuns:
    """Pair the requests finished in both runs; cut each token series to the shorter of the two."""
    r_ids, r_starts, r_counts = _blocks(real)
    s_ids, s_starts, s_counts = _blocks(sim)
    common = np.intersect1d(r_ids, s_ids, assume_unique=True)
    if len(common) == 0:
        raise ArtifactError(
            f"real run {real.id!r} and simulated run {sim.id!r} have no finished request in common; nothing to compare"
        )
    ri = np.searchsorted(r_ids, common)
    si = np.searchsorted(s_ids, common)
    r_req = real.requests.set_index("request_id").loc[common]
    s_req = sim.requests.set_index("request_id").loc[common]
    for col in ("num_prefill_tokens", "num_decode_tokens"):
        bad = r_req[col].to_numpy() != s_req[col].to_numpy()
        if bad.any():
            rid = int(common[int(np.argmax(bad))])
            raise ArtifactError(
                f"request {rid}: {col} is {int(r_req[col].iloc[int(np.argmax(bad))])} in real run {real.id!r} "
                f"but {int(s_req[col].iloc[int(np.argmax(bad))])} in simulated run {sim.id!r}; "
                "the runs do not replay the same workload requests"
            )
    keep = np.minimum(r_counts[ri], s_counts[si])
    return PairedRuns(
        real=real,
        sim=sim,
        request_ids=common,
        real_tokens=_series(real, r_req, r_starts[ri], r_counts[ri], keep, sim),
        sim_tokens=_series(sim, s_req, s_starts[si], s_counts[si], keep, real),
        real_counts_full=r_counts[ri],
        sim_counts_full=s_counts[si],
        left_out_real=len(r_ids) - len(common),
        left_out_sim=len(s_ids) - len(common),
    )
