"""Data builders shared by the tests and the benchmarks: workload directories, profiling roots and run pairs.

Each writes a directory in the layout of ``specs/`` without running the stage that normally makes it, so a test
(or a benchmark) can build exactly the input it needs and compute the expected result by hand:

- :func:`make_workload`: a workload (``specs/workload.md``) from ``(arrival_ns, prefill, decode)`` triples;
- :func:`conversation_workload`: a large conversation-like workload (lengths and arrivals only), for benchmarks;
- :func:`make_profile` / :func:`constant_profile`: a profiling root (``specs/profiling_root.md``) whose operator
  times are functions of the shape (:func:`h100_like_profile`: Qwen3-0.6B on an H100, roughly). With Vidur 0.0.26 one iteration then takes ``num_layers * (sum of the 9
  mlp.csv ops + sum of attn_prefill over prefill requests + attn_decode * (1 + 0.1 if GQA and decode batch > 1))``
  milliseconds (attn_kv_cache_save is left out);
- :class:`SyntheticRun`, :func:`sequential_run`, :func:`write_run`: run pairs of known distortion. A base run
  serves one request at a time with no queueing (arrivals far enough apart), so its per-token iterations are well
  defined; distortions (scale, shift, early stop) then change every latency by a known amount, and a comparison
  must recover exactly that amount.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import PROFILE_META, WORKLOAD_META, atomic_dir
from gpu_simulate_test.io.runs import write_run_meta, write_run_tables
from gpu_simulate_test.io.schemas import (
    ATTENTION_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    MLP_PROFILE_OPS,
    PROFILE_STATS,
    TRACE_INTERVALS,
    TRACE_LENGTHS,
)
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.vidur_ext.profiler.grid import ladder
from gpu_simulate_test.vidur_ext.profiling_root import DATASET_CONFIG_FILE, GridLimits
from gpu_simulate_test.workloads.load import PROMPTS


# --- workloads -----------------------------------------------------------------------------------------


def make_workload(
    root: Path, workload_id: str, requests: Sequence[tuple[int, int, int]], *, vocab: int = 1000, seed: int = 0
) -> Path:
    """One request per (arrival_time_ns, num_prefill_tokens, num_decode_tokens), ids 0.. in the given order."""
    path = Path(root) / workload_id
    path.mkdir(parents=True, exist_ok=False)
    rng = random.Random(seed)
    ids = list(range(len(requests)))
    arrivals = [a for a, _, _ in requests]
    write_table(
        pd.DataFrame({"request_id": ids, "num_prefill_tokens": [p for _, p, _ in requests], "num_decode_tokens": [d for _, _, d in requests]}),
        path / TRACE_LENGTHS.filename,
        TRACE_LENGTHS,
    )
    write_table(
        pd.DataFrame({"request_id": ids, "arrival_time_ns": arrivals, "inter_arrival_ns": [0] + [b - a for a, b in zip(arrivals, arrivals[1:])]}),
        path / TRACE_INTERVALS.filename,
        TRACE_INTERVALS,
    )
    with open(path / PROMPTS, "w") as fh:
        for rid, (_, prefill, _) in zip(ids, requests):
            fh.write(json.dumps({"request_id": rid, "prompt_token_ids": [rng.randrange(vocab) for _ in range(prefill)]}) + "\n")
    write_json(path / WORKLOAD_META, build_meta(kind="workload", id=workload_id, config={"test": True}, inputs={}))
    return path


def conversation_workload(root: Path, workload_id: str, n: int, qps: float, *, seed: int = 0, max_prompt: int = 8000,
                          max_output: int = 1500) -> Path:
    """``n`` requests drawn like a conversation trace (no public one is reachable offline): lognormal prompts (median
    1,000 tokens) and outputs (median 130), bursty gamma arrivals (CV 2) at ``qps``. Lengths and arrivals only (a
    simulation never reads prompt token ids)."""
    rng = np.random.default_rng(seed)
    prompt = np.clip(np.rint(rng.lognormal(np.log(1000), 0.9, n)), 4, max_prompt).astype(np.int64)
    output = np.clip(np.rint(rng.lognormal(np.log(130), 0.8, n)), 1, max_output).astype(np.int64)
    cv = 2.0
    arrivals = np.rint(np.cumsum(rng.gamma(1 / cv**2, cv**2 / qps, n)) * 1e9).astype(np.int64)
    arrivals -= arrivals[0]
    path = Path(root) / workload_id
    path.mkdir(parents=True)
    ids = np.arange(n)
    write_table(pd.DataFrame({"request_id": ids, "num_prefill_tokens": prompt, "num_decode_tokens": output}),
                path / TRACE_LENGTHS.filename, TRACE_LENGTHS)
    write_table(pd.DataFrame({"request_id": ids, "arrival_time_ns": arrivals, "inter_arrival_ns": np.diff(arrivals, prepend=0)}),
                path / TRACE_INTERVALS.filename, TRACE_INTERVALS)
    write_json(path / WORKLOAD_META, build_meta(kind="workload", id=workload_id, config={"conversation_workload": True}, inputs={}))
    return path


# --- profiling roots -----------------------------------------------------------------------------------


def _stats(op: str, value: float | None) -> dict[str, Any]:
    return {f"time_stats.{op}.{s}": value if s != "std" or value is None else 0.0 for s in PROFILE_STATS}


def make_profile(
    root: Path, bundle_id: str, *, model: Any, hardware: Any, backend: Any, limits: GridLimits,
    op_ms: Callable[[int], float], prefill_ms: Callable[[int, int], float], decode_ms: Callable[[int, int], float],
    held_out_error_pct: Optional[float] = 0.0, busy: bool = False,
) -> Path:
    """A complete bundle: ``op_ms(num_tokens)`` for every mlp.csv op, attention by ``(chunk, kv)`` / ``(batch, kv)``.

    Its verdict record (``specs/profiling_root.md``) has one held-out shape off by ``held_out_error_pct`` and a host
    that was ``busy`` or quiet: ``pass`` by default; ``held_out_error_pct=None`` writes a bundle from before verdicts.
    """
    from gpu_simulate_test.vidur_ext.registration import vidur_model_name  # imports Vidur (seconds): only when needed

    path = Path(root) / bundle_id
    path.mkdir(parents=True)
    dims = {"n_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads, "n_embd": model.hidden_size,
            "n_expanded_embd": model.intermediate_size, "vocab_size": model.vocab_size, "use_gated_mlp": True,
            "num_tensor_parallel_workers": 1}
    mlp = pd.DataFrame([
        {"num_tokens": n, **dims, **{k: v for op in MLP_PROFILE_OPS for k, v in _stats(op, op_ms(n)).items()}}
        for n in ladder(limits.tokens_per_iteration)
    ])
    write_table(mlp, path / MLP_PROFILE.filename, MLP_PROFILE)
    kv_points = [0, *ladder(limits.request_tokens, start=16)]
    attn_dims = {"n_embd": model.hidden_size, "n_q_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads,
                 "block_size": limits.block_size, "num_tensor_parallel_workers": 1, "max_model_len": limits.request_tokens,
                 "attention_backend": "sdpa"}
    rows = []
    for chunk in ladder(limits.prefill_chunk, start=8):
        for kv in kv_points:
            if chunk + kv <= limits.request_tokens:
                rows.append({"batch_size": 1, "prefill_chunk_size": chunk, "kv_cache_size": kv, "is_prefill": True, **attn_dims,
                             **_stats("attn_prefill", prefill_ms(chunk, kv)), **_stats("attn_decode", None),
                             **_stats("attn_kv_cache_save", 0.0)})
    for batch in ladder(limits.batch_size):
        for kv in kv_points[1:]:
            rows.append({"batch_size": batch, "prefill_chunk_size": 0, "kv_cache_size": kv, "is_prefill": False, **attn_dims,
                         **_stats("attn_prefill", None), **_stats("attn_decode", decode_ms(batch, kv)),
                         **_stats("attn_kv_cache_save", 0.0)})
    write_table(pd.DataFrame(rows), path / ATTENTION_PROFILE.filename, ATTENTION_PROFILE)
    write_table(pd.DataFrame([{"shape": "decode:1x16", "role": "held_out", "batch_size": 1, "num_prefill_tokens": 0,
                               "num_decode_tokens": 1, "num_samples": 1, "median_ns": 1, "p10_ns": 1, "p90_ns": 1}]),
                path / ITERATION_PROFILE.filename, ITERATION_PROFILE)
    check = pd.DataFrame([{"shape": "decode:1x16", "measured_ns": 100, "predicted_ns": int(round(100 + (held_out_error_pct or 0.0))),
                           "error_pct": held_out_error_pct or 0.0}])
    write_table(check, path / HELD_OUT_CHECK.filename, HELD_OUT_CHECK)
    (path / DATASET_CONFIG_FILE).write_text(json.dumps({"model": vidur_model_name(model), "device_sku": hardware.vidur_device}))
    config = {"model": {"name": model.name}, "hardware": {"name": hardware.name}, "backend": {"name": backend.name}}
    record: dict[str, Any] = {}
    if held_out_error_pct is not None:
        err = abs(float(held_out_error_pct))
        record = {"source": "measured",
                  "held_out_check": {"num_shapes": 1, "median_abs_error_pct": err, "max_abs_error_pct": err,
                                     "tolerance_pct": 10.0, "table": check.to_dict(orient="records")},
                  "host_load": {"other_cpu_cores": 2.0 if busy else 0.0, "busy": busy,
                                "reasons": ["other processes used 2.00 CPU cores on average (more than 0.5)"] if busy else []}}
    write_json(path / PROFILE_META, build_meta(kind="profile_bundle", id=bundle_id, config=config, inputs={},
                                           grid_limits=limits.to_dict(), **record))
    return path


def constant_profile(root: Path, bundle_id: str, *, model: Any, hardware: Any, backend: Any, limits: GridLimits,
                     op: float, prefill: float, decode: float, **verdict: Any) -> Path:
    """Every mlp.csv op takes ``op`` ms, prefill attention ``prefill`` ms, decode attention ``decode`` ms (per layer);
    ``verdict``: :func:`make_profile`'s ``held_out_error_pct`` and ``busy``."""
    return make_profile(root, bundle_id, model=model, hardware=hardware, backend=backend, limits=limits,
                        op_ms=lambda n: op, prefill_ms=lambda c, k: prefill, decode_ms=lambda b, k: decode, **verdict)


def h100_like_profile(root: Path, bundle_id: str, *, model: Any, hardware: Any, backend: Any, max_prompt: int,
                      max_kv: int) -> Path:
    """Per-layer costs roughly shaped like Qwen3-0.6B on an H100 (ms, linear in the shape), covering ``backend``'s
    limits on prompts up to ``max_prompt`` and requests up to ``max_kv`` tokens."""
    from gpu_simulate_test.config.limits import resolve_limits

    lim = resolve_limits(backend, max_prompt)
    limits = GridLimits(tokens_per_iteration=lim.token_budget, prefill_chunk=lim.token_budget, batch_size=lim.batch_cap,
                        request_tokens=max_kv, block_size=lim.block_size)
    return make_profile(root, bundle_id, model=model, hardware=hardware, backend=backend, limits=limits,
                        op_ms=lambda n: 0.004 + 2e-6 * n, prefill_ms=lambda c, k: 0.01 + 1e-8 * c * (k + c),
                        decode_ms=lambda b, k: 0.01 + 2e-8 * b * k)


# --- run pairs -----------------------------------------------------------------------------------------


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
              status: str = "complete", config: Optional[dict[str, Any]] = None, bundle_id: Optional[str] = None) -> Path:
    """Write ``run`` as a run directory ``root/run_id`` of ``kind`` (real_run or vidur_run; ``bundle_id``: the
    bundle a simulated run names as its input)."""
    requests, tokens = run.frames()
    cfg = config or {"model": {"name": "qwen3-tiny"}, "hardware": {"name": "cpu"}, "backend": {"name": "hf-generate"}}
    with atomic_dir(Path(root) / run_id) as tmp:
        write_run_tables(tmp, requests, tokens, run.iterations() if with_iterations else None)
        inputs = {"workload_id": workload_id, **({"bundle_id": bundle_id} if bundle_id else {})}
        write_run_meta(tmp, build_meta(kind=kind, id=run_id, config=cfg, inputs=inputs, status=status))
    return Path(root) / run_id
