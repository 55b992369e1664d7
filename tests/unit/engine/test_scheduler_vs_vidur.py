"""The engine's scheduler forms vidur-sim's batches, iteration by iteration.

Each case runs vidur-sim (the project's own path: a composed ``vidur_sim`` config, a synthetic CPU bundle,
``run_vidur_sim``) on a workload, then replays the same workload into :class:`Scheduler` under a virtual
clock whose iteration k lasts exactly as long as Vidur's iteration k. Arrivals join as Vidur's event queue lets
them (specs/engine.md, "Ties"): a request whose arrival is at or before the end of an iteration is queued before
the next one is formed, and an idle engine forms one at the next arrival. Every iteration's members, their token
counts, their order and its start time must agree, and so must the number of preemptions.

Both sides read one ``backend=native`` config: vidur-sim through the limits resolver, the scheduler through the
driver's own :func:`~gpu_simulate_test.backends.native.engine_config` (the one mapping of ``backend.vidur_scheduler``
onto the engine's ``policy``), so the limits cannot drift apart.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.backends.native import engine_config
from gpu_simulate_test.config.limits import resolve_limits
from gpu_simulate_test.engine.config import EngineConfig
from gpu_simulate_test.engine.scheduler import Scheduler
from gpu_simulate_test.engine.sequence import Sequence
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.testing import make_profile, make_workload
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.vidur_ext.simulate import run_vidur_sim

# Vidur's linear-regression predictor with one candidate trains in a fraction of the random forest's time.
PREDICTOR = ["vidur.execution_time_predictor=linear_regression", "vidur.linear_regression.polynomial_degree=[1]",
             "vidur.k_fold_cv_splits=2"]
LIMITS = dict(tokens_per_iteration=256, prefill_chunk=256, batch_size=16, request_tokens=256)
Request = tuple[int, int, int]  # (arrival_time_ns, num_prefill_tokens, num_decode_tokens)


def _workload(seed: int, n: int) -> list[Request]:
    """Arrivals about a step apart (queues form), in bursts of 1-4 at the same nanosecond, then 10 more at one
    nanosecond."""
    rng = random.Random(seed)
    out: list[Request] = []
    t = 0
    while len(out) < n - 10:
        t += rng.randint(100_000, 2_500_000)
        out += [(t, rng.randint(5, 150), rng.randint(1, 40)) for _ in range(min(rng.randint(1, 4), n - 10 - len(out)))]
    t += 3_000_001
    return out + [(t, rng.randint(5, 150), rng.randint(1, 40)) for _ in range(10)]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic bundle for every case (writing it is a good part of a case's set-up)."""
    return tmp_path_factory.mktemp("vidur_shared")


def _vidur(compose_app: Callable[..., Any], shared: Path, policy: str, requests: list[Request],
           limits: dict[str, object]):
    cfg = compose_app("vidur_sim", [
        "backend=native", "workload_id=w", f"profiling_root={shared / 'b'}",
        *PREDICTOR, f"backend.vidur_scheduler={policy}", *(f"backend.{k}={v}" for k, v in limits.items()),
    ])
    make_workload(Path(cfg.paths.workloads), "w", requests)
    if not (shared / "b").exists():
        # Times that vary with every shape, so that the virtual clock is exercised, not a constant step.
        make_profile(shared, "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                     limits=GridLimits(**LIMITS, block_size=int(cfg.backend.block_size)),
                     op_ms=lambda n: 0.02 + 0.0005 * n, prefill_ms=lambda c, k: 0.05 + 0.001 * c + 0.0002 * k,
                     decode_ms=lambda b, k: 0.03 + 0.005 * b + 0.0001 * k)
    run = load_run(run_vidur_sim(cfg), "vidur_run")
    it = run.iterations
    rows = list(zip(it["start_time_ns"].tolist(), it["end_time_ns"].tolist(), it["requests"].tolist()))
    return cfg, rows, int(run.meta["settings"]["num_restarts"])


def _engine_config(cfg: Any, requests: list[Request]) -> EngineConfig:
    """What the native driver hands its engine for this config and workload."""
    limits = resolve_limits(cfg.backend, max(p for _, p, _ in requests), len(requests))
    return engine_config(limits, cfg.model, dtype="float32", device="cpu")


def _replay(config: EngineConfig, requests: list[Request], durations: list[int]) -> tuple[list[tuple[int, str]], int, int]:
    """The scheduler under a virtual clock: iteration k lasts ``durations[k]``; returns the (start, members) rows,
    the preemptions and how many of those hit a sequence in the middle of its prefill."""
    sched = Scheduler(config, int(config.num_blocks))
    seqs = [Sequence(i, [0] * p, p, d, arrival_time_ns=t) for i, (t, p, d) in enumerate(requests)]
    pending = deque(seqs)
    clock, rows, mid_prefill = 0, [], 0
    while pending or sched.has_unfinished():
        while pending and pending[0].arrival_time_ns <= clock:
            sched.add(pending.popleft())
        before = {q: q.num_restarts for q in sched.running if not q.is_prefill_complete}
        batch = sched.schedule()
        mid_prefill += sum(q.num_restarts > n for q, n in before.items())
        if batch is None:  # idle: the next batch forms when the next request arrives
            clock = pending[0].arrival_time_ns
            continue
        rows.append((clock, ";".join(f"r{e.seq.seq_id}:{e.num_q_tokens}" for e in batch.entries)))
        if len(rows) > len(durations):
            break  # more iterations than Vidur's: the comparison below shows where they part
        clock += durations[len(rows) - 1]
        sched.postprocess(batch, [0] * sum(e.samples for e in batch.entries))
    return rows, sched.num_preemptions, mid_prefill


CASES = {
    # policy, backend limits, workload, whether it preempts
    "sarathi-ample-pool": ("sarathi", dict(max_batch_tokens=64, max_requests_per_batch=8, num_blocks=400), _workload(1, 40), False),
    "sarathi-small-pool": ("sarathi", dict(max_batch_tokens=32, max_requests_per_batch=16, num_blocks=32,
                                           watermark_blocks_fraction=0.05), _workload(7, 40), True),
    "vllm-ample-pool": ("vllm", dict(max_batch_tokens=256, max_requests_per_batch=8, num_blocks=400), _workload(3, 40), False),
    "vllm-small-pool": ("vllm", dict(max_batch_tokens=200, max_requests_per_batch=16, num_blocks=20,
                                     watermark_blocks_fraction=0.1), _workload(4, 40), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_batches_as_vidur_sim(compose_app: Callable[..., Any], shared: Path, case: str) -> None:
    policy, limits, requests, preempts = CASES[case]
    cfg, vidur_rows, vidur_restarts = _vidur(compose_app, shared, policy, requests, {"block_size": 16, **limits})
    durations = [end - start for start, end, _ in vidur_rows]
    rows, preemptions, mid_prefill = _replay(_engine_config(cfg, requests), requests, durations)
    expected = [(start, members) for start, _, members in vidur_rows]
    for k, (ours, theirs) in enumerate(zip(rows, expected)):
        assert ours == theirs, f"iteration {k}: engine (start, members) {ours} != vidur-sim {theirs}"
    assert len(rows) == len(expected)
    assert preemptions == vidur_restarts
    # The case exercises what it is meant to: preemptions (small pools; under sarathi some in the middle of a
    # chunked prefill) or full batches (the batch cap, ample pools), chunked prefills under sarathi, and
    # durations that vary.
    assert (vidur_restarts > 0) == preempts
    assert (mid_prefill > 0) == (preempts and policy == "sarathi")
    prompts = {f"r{i}": p for i, (_, p, _) in enumerate(requests)}
    members = [[(r, int(q)) for r, q in (x.split(":") for x in m.split(";"))] for _, m in expected]
    assert any(1 < q < prompts[r] for m in members for r, q in m) == (policy == "sarathi")
    assert preempts or max(len(m) for m in members) == limits["max_requests_per_batch"]
    assert len(set(durations)) >= 10
