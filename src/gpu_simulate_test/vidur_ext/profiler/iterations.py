"""Whole-iteration wall times of fixed batch shapes, measured through the backend's own driver.

The timer submits requests to the driver exactly as real-bench's replay does and reads back the steps the driver
recorded (``backends/recorder.py``): a shape's time is the very step real-bench writes to ``iteration_metrics.csv``,
so it includes everything the engine spends per iteration (embedding, final norm, LM head, sampling, scheduling and
per-request host work), on the engine's own thread. On the native engine a ``StepProbe`` (``host_share.py``) also
gives each timed step's device time and how the engine packed it.

The steps are timed as real-bench runs them (``backends.conditions.measured_run``): the cyclic garbage collector
paused and the GIL's switch interval at real-bench's, so that a step's host share is the one the runs it predicts
have. Timed without them (bundles before 2026-12-03), the hand-over between steps of 2-4 decodes came out at 70-81 us
on the H200, against 33-35 us in the campaign's runs (``studies/2026-12-03-host-share/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from gpu_simulate_test.backends.base import Backend
from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S
from gpu_simulate_test.backends.recorder import Recorder, Step, wait_until
from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.limits import Limits, resolve_limits
from gpu_simulate_test.errors import EnvironmentUnavailableError
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

TIMEOUT_S = 600.0  # how long a shape may wait for the step it needs
# How whole steps are timed, in a native bundle's id: what changes it changes the bundle. First, on the engine as a
# run meets it, with no thread of the profiler's own taking the GIL (``bundle.QuietProgress``): a guess at why, timed
# after the operators under rich's refreshing bar, the engine's steps came out slower than a run's on the H200 (a
# hand-over of 84-123 us against ~50, ``studies/2026-12-03-handover-state/``); timed first, they were as slow: the
# step probe's own events slow the steps they time (``studies/2026-12-03-build-grid/``), so the walls are timed with
# them off and the device times apart.
STEP_TIMING = (f"as real-bench runs them: cyclic GC paused, GIL switch interval {SWITCH_INTERVAL_S * 1e6:g} us; "
               "on the engine as loaded, before its operators are timed; no progress-bar thread; walls with the "
               "step probe's events off, device times in rounds of their own")


def _prompt(n: int, vocab: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(10, vocab, size=n).tolist()


@dataclass(frozen=True)
class ShapeSamples:
    """The timed steps of one shape: their wall times and, where the shape decodes, the mean KV per decode request
    before the step as those steps had it (the shape's nominal KV plus what the requests decoded while later prompts
    were still prefilling: up to ``batch x kv / budget`` more for the first of them)."""

    ns: np.ndarray
    decode_kv: Optional[float]
    device_ns: Optional[np.ndarray] = None  # the device's time of each step (native engine, ``StepProbe``)
    at_start: Optional[np.ndarray] = None  # whether the engine packed each step at its start (else ahead)


class StepTimer:
    """Times the steps of batch shapes on one backend; ``unsupported`` says why a shape cannot be scheduled."""

    def __init__(self, backend_cfg: BackendConfig, shapes: list[BatchShape], samples: int) -> None:
        self.samples = samples
        self.shapes = shapes
        # The limits on the longest prompt the shapes submit: what the driver resolves from plan() too.
        self.limits: Limits = resolve_limits(backend_cfg, max((s.longest_prompt for s in shapes), default=1))
        self._next_id = 0

    def unsupported(self, shape: BatchShape) -> Optional[str]:
        if shape.batch_size > self.limits.batch_cap:
            return f"{shape.batch_size} requests exceed backend.max_requests_per_batch={self.limits.batch_cap}"
        if shape.num_tokens > self.limits.token_budget:
            return f"{shape.num_tokens} tokens exceed the {self.limits.token_budget} one iteration may hold (backend.max_batch_tokens)"
        if shape.kind == "mixed" and self.limits.policy == "vllm":
            return "the vllm policy never runs a prompt and decodes in one iteration"
        if shape.prefill_kv:
            if self.limits.policy != "sarathi":
                return f"the {self.limits.policy} policy prefills whole prompts: no chunk follows cached prompt tokens"
            if shape.prefill_kv % self._chunk(shape):
                how = (f"beside {shape.decode_batch} decodes is cut into chunks of {self._chunk(shape)} "
                       "(backend.max_batch_tokens less the decodes)" if shape.decode_batch else
                       f"alone is cut into chunks of {self._chunk(shape)} (backend.max_batch_tokens)")
                return f"a prompt {how}: no chunk starts at {shape.prefill_kv} cached tokens"
        if self.limits.policy == "vllm" and shape.longest_prompt > self.limits.token_budget:
            return (f"a prompt of {shape.longest_prompt} tokens (a decode's prompt is its KV) exceeds the "
                    f"{self.limits.token_budget} one iteration may hold (backend.max_batch_tokens), and the vllm policy "
                    "prefills whole prompts")
        return None

    def _chunk(self, shape: BatchShape) -> int:
        """The prompt tokens a step gives the shape's prompt: the budget less its decodes (they take theirs first)."""
        return max(self.limits.token_budget - shape.decode_batch, 1)

    def _lengths(self, shape: BatchShape) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(prompt, decode) lengths a shape submits: the requests that run first, then the ones added one at a time."""
        b, s = shape.decode_batch, self.samples
        if shape.kind == "prefill":
            return [], [(shape.prefill_kv + shape.prefill_tokens, 1)] * (s + 1)
        # Early requests decode while later prompts still prefill: outlast those iterations too (else the first
        # ones finish before the last one decodes, and no step ever holds all of them). The decodes take their
        # tokens of the budget first, so the prompts fill at no less than ``budget - b`` tokens a step.
        filling = b + -(-b * shape.decode_kv // max(self.limits.token_budget - b, 1))
        if shape.kind == "decode":
            return [(shape.decode_kv, s + 3 + filling)] * b, []
        earlier = shape.prefill_kv // self._chunk(shape)  # the chunks of each prompt before the one timed
        return ([(shape.decode_kv, 4 * s + 16 + filling + (s + 1) * earlier)] * b,
                [(shape.prefill_kv + shape.prefill_tokens, 1)] * (s + 1))

    def plan(self) -> Workload:
        """Every request the shapes it can schedule submit, as a workload the driver can check before it loads
        anything (the others are skipped, with :meth:`unsupported`'s reason)."""
        pairs = [p for shape in self.shapes if self.unsupported(shape) is None for group in self._lengths(shape)
                 for p in group]
        requests = [WorkloadRequest(i, 0, prompt, decode) for i, (prompt, decode) in enumerate(pairs)]
        return Workload(workload_id="vidur-profile", path=Path("<vidur-profile batch shapes>"), meta={}, requests=requests)

    def measure(self, backend: Backend, recorder: Recorder, shape: BatchShape, probe: Any = None) -> ShapeSamples:
        """``samples`` steps of ``shape`` (the first matching step is a warm-up): wall times and the KV they had; with
        ``probe`` (a ``StepProbe`` installed before the recorder's first step) their packing and, unless they launched
        untimed, their device times too."""
        first, added = self._lengths(shape)
        since = recorder.num_steps
        vocab = backend.model_cfg.vocab_size
        running = [self._submit(backend, p, d, vocab)[0] for p, d in first]
        if shape.kind == "mixed":  # the decoders run a full decode step before the prefills join them
            self._wait(backend, recorder, since, lambda st: _is(st, decode=running), f"{len(running)} requests decoding")
        extra: list[int] = []
        for p, d in added:
            at = recorder.num_steps  # no step before this one can hold the new request
            rid, _ = self._submit(backend, p, d, vocab)
            extra.append(rid)
            if shape.kind == "prefill":
                backend.wait_all()
            else:  # its every chunk run (the next prompt must not share the timed one's step)
                for _ in range(shape.prefill_kv // self._chunk(shape) + 1):
                    at = self._wait(backend, recorder, at, lambda st, r=rid: any(i.request_id == r for i in st.items),
                                    f"request {rid}") + 1
        backend.wait_all()
        steps = recorder.steps(since)
        cached = _cached_before(steps)
        if shape.kind == "prefill":
            picked = [i for i, st in enumerate(steps) if len(st.items) == 1 and st.items[0].request_id in extra
                      and st.items[0].is_prefill and st.items[0].num_tokens == shape.prefill_tokens
                      and cached[i][0] == shape.prefill_kv][1:]
        elif shape.kind == "decode":
            picked = [i for i, st in enumerate(steps) if _is(st, decode=running)][1:self.samples + 1]
        else:
            picked = [i for i, st in enumerate(steps) if _is(st, decode=running, prefill=(extra, shape.prefill_tokens))
                      and _prefill_cached(st, cached[i]) == shape.prefill_kv][1:]
        if not picked:
            raise EnvironmentUnavailableError(f"backend {backend.name} never ran an iteration of shape {shape}; pick another shape")
        decode_kv = None
        if shape.decode_batch:
            decode_kv = float(np.mean([kv for i in picked for item, kv in zip(steps[i].items, cached[i]) if not item.is_prefill]))
        ns = np.array([steps[i].end_ns - steps[i].start_ns for i in picked], dtype=np.int64)
        if probe is None:
            return ShapeSamples(ns, decode_kv)
        records = probe.records()  # the engine is idle: every step waited for
        if len(records) != recorder.num_steps:
            raise RuntimeError(f"the step probe saw {len(records)} launches for {recorder.num_steps} recorded steps; "
                               "it must be installed before the first step")
        launches = [records[since + i] for i in picked]
        device = None if any(r.device_ns is None for r in launches) else \
            np.array([r.device_ns for r in launches], dtype=np.int64)  # None: launched untimed (``StepProbe.untimed``)
        return ShapeSamples(ns, decode_kv, device, np.array([r.at_start for r in launches], dtype=bool))

    def idle_start(self, backend: Backend, recorder: Recorder, prompt: int, gap_ns: int) -> tuple[int, int, int]:
        """One lone prompt of ``prompt`` tokens (one output token: its one step) submitted ``gap_ns`` after the
        engine's last step ended, the engine idle since (0: at once, as :meth:`measure` times a lone prompt): the gap
        it got, its wake-up (the request's dispatch to its step's start) and the step's wall, in ns."""
        backend.wait_all()
        steps = recorder.steps(max(recorder.num_steps - 1, 0))
        last = steps[-1].end_ns if steps else recorder.clock.now()
        wait_until(recorder.clock, last + gap_ns)
        since = recorder.num_steps
        rid, dispatched = self._submit(backend, prompt, 1, backend.model_cfg.vocab_size)
        backend.wait_all()
        step = next(st for st in recorder.steps(since) if any(i.request_id == rid for i in st.items))
        return dispatched - last, step.start_ns - dispatched, step.end_ns - step.start_ns

    def _submit(self, backend: Backend, prompt: int, decode: int, vocab: int) -> tuple[int, int]:
        """One request handed to the driver: its id and its dispatch time (the recorder's clock)."""
        rid, self._next_id = self._next_id, self._next_id + 1
        return rid, backend.submit(WorkloadRequest(rid, 0, prompt, decode), _prompt(prompt, vocab, rid + 1))

    @staticmethod
    def _wait(backend: Backend, recorder: Recorder, since: int, match: Callable[[Step], bool], what: str) -> int:
        """The index of the first step from ``since`` on that ``match``es (waited for)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            matched, since = recorder.wait_for_step(match, since, 1.0)
            if matched:
                return since
            failure = backend.failure()
            if failure is not None or time.monotonic() > deadline:
                raise EnvironmentUnavailableError(
                    f"backend {backend.name} ran no step with {what} while profiling"
                    + (f": {type(failure).__name__}: {failure}" if failure is not None else f" within {TIMEOUT_S:.0f} s")
                )


def _cached_before(steps: list[Step]) -> list[list[int]]:
    """Per step, per item: the tokens its request had in the KV cache before the step (every token a request ran in an
    earlier step: its prompt chunks, then one per decode). The shape's requests are all submitted after ``steps``
    begin, so nothing of theirs is missing."""
    seen: dict[int, int] = {}
    out = []
    for st in steps:
        out.append([seen.get(item.request_id, 0) for item in st.items])
        for item in st.items:
            seen[item.request_id] = seen.get(item.request_id, 0) + item.num_tokens
    return out


def _prefill_cached(step: Step, cached: list[int]) -> int:
    """The tokens the step's prefill item had cached before it (its prompt's earlier chunks)."""
    return next(c for item, c in zip(step.items, cached) if item.is_prefill)


def _is(step: Step, *, decode: list[int], prefill: Optional[tuple[list[int], int]] = None) -> bool:
    """``step`` holds exactly the ``decode`` requests, one token each, plus (if given) one of the prefill requests
    with a chunk of that many tokens."""
    decodes = {i.request_id for i in step.items if not i.is_prefill and i.num_tokens == 1}
    prefills = [i for i in step.items if i.is_prefill]
    if decodes != set(decode) or len(step.items) != len(decode) + (prefill is not None):
        return False
    if prefill is None:
        return not prefills
    return len(prefills) == 1 and prefills[0].request_id in prefill[0] and prefills[0].num_tokens == prefill[1]
