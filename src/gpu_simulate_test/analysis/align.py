"""Load a real and a simulated run, check that they can be compared, and pair their requests.

Pairing is where early stop is handled: each request's token series is cut to the tokens that
both runs produced (normally the real run's ``num_decode_tokens_actual``), so TTFT, TPOT, E2E
and ITL are computed over the same tokens on both sides. Everything is vectorised over the token
arrays; no per-request Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.runs import RunData, load_run, resolve_dir


@dataclass(frozen=True)
class TokenSeries:
    """One run's token times for the paired requests: request ``i`` owns ``times[offsets[i]:offsets[i+1]]``."""

    arrival_ns: np.ndarray  # (n,) int64
    times_ns: np.ndarray  # (sum(counts),) int64
    counts: np.ndarray  # (n,) int64, tokens kept per request (>= 1)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)))


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
    """(request ids sorted, start row of each one's tokens, its token count) from the token frame."""
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
    r_times = real.tokens["token_time_ns"].to_numpy(np.int64)
    s_times = sim.tokens["token_time_ns"].to_numpy(np.int64)
    return PairedRuns(
        real=real,
        sim=sim,
        request_ids=common,
        real_tokens=TokenSeries(r_req["arrival_time_ns"].to_numpy(np.int64), _gather(r_times, r_starts[ri], keep), keep),
        sim_tokens=TokenSeries(s_req["arrival_time_ns"].to_numpy(np.int64), _gather(s_times, s_starts[si], keep), keep),
        real_counts_full=r_counts[ri],
        sim_counts_full=s_counts[si],
        left_out_real=len(r_ids) - len(common),
        left_out_sim=len(s_ids) - len(common),
    )
