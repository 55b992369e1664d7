"""Load a real and a simulated run, check that they can be compared, and pair their requests.

Pairing is where early stop is handled: each request's token series is cut to the tokens that
both runs produced (normally the real run's ``num_decode_tokens_actual``), so TTFT, TPOT, E2E
and ITL are computed over the same tokens on both sides. Everything is vectorised over the token
arrays; no per-request Python loop.

A run imported from a benchmark that kept no per-token times has, for such a request, only its first and last
token's times (``specs/run.md``). Its TTFT, TPOT and E2E are still exact; its ITL gaps are unknown, so ITL pairs only
the requests whose every token time is known in both runs. Such a series cannot be cut short either: a request that
would need it (the other run produced fewer tokens) is left out and counted. A run known per request only (TTFT,
E2E and output length, ``compare-runs mode=import import_format=requests_csv``) is such a run for every request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.runs import RunData, load_run, resolve_dir


@dataclass(frozen=True)
class TokenSeries:
    """One run's token times for the paired requests: request ``i`` owns ``times[offsets[i]:offsets[i+1]]``, the times
    of its tokens ``index[offsets[i]:offsets[i+1]]`` (0, 1, 2, ... unless only some tokens' times are known)."""

    arrival_ns: np.ndarray  # (n,) int64
    times_ns: np.ndarray  # (sum(counts),) int64
    index: np.ndarray  # (sum(counts),) int64, token index of each time
    counts: np.ndarray  # (n,) int64, times kept per request (>= 1)
    complete: np.ndarray  # (n,) bool, every token's time is known in both runs (ITL pairs only these)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)))

    @property
    def tokens(self) -> np.ndarray:
        """Tokens compared per request (the last kept token's index + 1)."""
        return self.index[self.offsets[1:] - 1] + 1

    @property
    def partial(self) -> np.ndarray:
        """(n,) bool: the request's series lacks some token times (only its first and last, say)."""
        return self.counts < self.tokens


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
    left_out_uncut: int = 0  # finished in both, but a series without per-token times would need a cut

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

    @property
    def partial_real(self) -> int:
        """Compared requests whose real series lacks some token times."""
        return int(self.real_tokens.partial.sum())

    @property
    def partial_sim(self) -> int:
        return int(self.sim_tokens.partial.sum())

    def subset(self, keep: np.ndarray) -> "PairedRuns":
        """The pairs where boolean ``keep`` holds (e.g. one phase's requests); nothing is left out of either run."""
        return replace(self, request_ids=self.request_ids[keep], real_tokens=_take(self.real_tokens, keep),
                       sim_tokens=_take(self.sim_tokens, keep), real_counts_full=self.real_counts_full[keep],
                       sim_counts_full=self.sim_counts_full[keep], left_out_real=0, left_out_sim=0, left_out_uncut=0)


def _take(ts: TokenSeries, keep: np.ndarray) -> TokenSeries:
    starts, counts = ts.offsets[:-1][keep], ts.counts[keep]
    return TokenSeries(ts.arrival_ns[keep], _gather(ts.times_ns, starts, counts), _gather(ts.index, starts, counts),
                       counts, ts.complete[keep])


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


def _blocks(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(request ids sorted, start row of each one's tokens, its rows, its tokens) from the token frame."""
    rid = run.tokens["request_id"].to_numpy(np.int64)
    idx = run.tokens["token_index"].to_numpy(np.int64)
    starts = np.flatnonzero(idx == 0)  # each request's rows are contiguous and start at index 0 (schema)
    rows = np.diff(np.append(starts, len(idx)))
    tokens = idx[starts + rows - 1] + 1 if len(starts) else np.empty(0, dtype=np.int64)
    ids = rid[starts]
    order = np.argsort(ids, kind="stable")
    return ids[order], starts[order], rows[order], tokens[order]


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
    r_ids, r_starts, r_rows, r_n = _blocks(real)
    s_ids, s_starts, s_rows, s_n = _blocks(sim)
    both = np.intersect1d(r_ids, s_ids, assume_unique=True)
    ri, si = np.searchsorted(r_ids, both), np.searchsorted(s_ids, both)
    keep_n = np.minimum(r_n[ri], s_n[si])
    r_full, s_full = r_rows[ri] == r_n[ri], s_rows[si] == s_n[si]
    cuttable = (r_full | (r_n[ri] == keep_n)) & (s_full | (s_n[si] == keep_n))
    common, ri, si, keep_n, r_full, s_full = (a[cuttable] for a in (both, ri, si, keep_n, r_full, s_full))
    if len(common) == 0 and len(both):
        raise ArtifactError(
            f"real run {real.id!r} and simulated run {sim.id!r}: each of the {len(both):,} requests finished in both "
            "has a series without per-token times that would need a cut to the other run's shorter length; compare "
            "it with a run of the full outputs"
        )
    if len(common) == 0:
        raise ArtifactError(
            f"real run {real.id!r} and simulated run {sim.id!r} have no finished request in common; nothing to compare"
        )
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
    complete = r_full & s_full

    def series(run: RunData, req: pd.DataFrame, starts: np.ndarray, rows: np.ndarray, full: np.ndarray) -> TokenSeries:
        kept = np.where(full, keep_n, rows)  # a partial series is kept whole (it needed no cut)
        times = run.tokens["token_time_ns"].to_numpy(np.int64)
        index = run.tokens["token_index"].to_numpy(np.int64)
        return TokenSeries(req["arrival_time_ns"].to_numpy(np.int64), _gather(times, starts, kept), _gather(index, starts, kept),
                           kept, complete)

    return PairedRuns(
        real=real,
        sim=sim,
        request_ids=common,
        real_tokens=series(real, r_req, r_starts[ri], r_rows[ri], r_full),
        sim_tokens=series(sim, s_req, s_starts[si], s_rows[si], s_full),
        real_counts_full=r_n[ri],
        sim_counts_full=s_n[si],
        left_out_real=len(r_ids) - len(both),
        left_out_sim=len(s_ids) - len(both),
        left_out_uncut=int((~cuttable).sum()),
    )
