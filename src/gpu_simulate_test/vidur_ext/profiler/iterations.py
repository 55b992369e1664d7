"""Whole-iteration wall times of a backend for fixed batch shapes, taken inside the real engine's own loop.

Each backend's timer says which shapes it can schedule; the times include everything the engine spends
per iteration (embedding, final norm, LM head, sampling, scheduling and per-request host work).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import numpy as np

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.modeling import device_sync


def _prompt(n: int, vocab: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(10, vocab, size=n).tolist()


class IterationTimer:
    """Times iterations of one backend; ``unsupported`` says why a shape cannot be scheduled (None: it can)."""

    def __init__(self, model: Any, backend: BackendConfig, samples: int) -> None:
        self.model, self.backend, self.samples = model, backend, samples
        self.vocab = model.config.vocab_size
        self.sync = device_sync(model.device)

    def unsupported(self, shape: BatchShape) -> Optional[str]:
        if shape.batch_size > self.backend.max_requests_per_batch:
            return f"{shape.batch_size} requests exceed backend.max_requests_per_batch={self.backend.max_requests_per_batch}"
        cap = self.backend.max_batch_tokens
        if cap is not None and shape.num_tokens > cap:
            return f"{shape.num_tokens} tokens exceed backend.max_batch_tokens={cap}"
        return None

    def measure(self, shape: BatchShape) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release engine resources (threads, caches)."""


class GenerateTimer(IterationTimer):
    """``model.generate`` one request at a time: a logits processor stamps the end of every step."""

    def unsupported(self, shape: BatchShape) -> Optional[str]:
        if shape.kind == "mixed":
            return "hf-generate runs one request at a time, so no iteration mixes prefill and decode"
        return super().unsupported(shape)

    def _run(self, prompt_len: int, new_tokens: int) -> tuple[int, list[int]]:
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        stamps: list[int] = []

        sync = self.sync

        class Stamp(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                sync()
                stamps.append(time.perf_counter_ns())
                return scores

        ids = torch.tensor([_prompt(prompt_len, self.vocab, prompt_len)], device=self.model.device)
        t0 = time.perf_counter_ns()
        with torch.inference_mode():
            self._generate(ids, new_tokens, LogitsProcessorList([Stamp()]))
        return t0, stamps

    def _generate(self, ids: Any, new_tokens: int, processors: Any) -> None:
        import torch

        self.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, logits_processor=processors, pad_token_id=0,
            cache_implementation=self.backend.cache_implementation, disable_compile=not self.backend.compile,
        )

    def measure(self, shape: BatchShape) -> np.ndarray:
        if shape.kind == "prefill":
            self._run(shape.prefill_tokens, 1)  # warm-up
            return np.array([s[0] - t0 for t0, s in (self._run(shape.prefill_tokens, 1) for _ in range(self.samples))])
        _, stamps = self._run(shape.decode_kv, self.samples + 2)
        return np.diff(np.array(stamps[1:]))


class ContinuousTimer(IterationTimer):
    """transformers' continuous-batching manager, its generation-loop body timed per iteration."""

    def __init__(self, model: Any, backend: BackendConfig, samples: int) -> None:
        super().__init__(model, backend, samples)
        from transformers import GenerationConfig

        from gpu_simulate_test.real_bench.backends.hf_continuous import continuous_batching_config

        gen = GenerationConfig(do_sample=False, pad_token_id=0, eos_token_id=-1)
        cb = continuous_batching_config(backend, seed=0)  # the very settings real-bench's hf-continuous uses
        self.manager = model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb)
        self.manager.warmup()
        self.records: list[tuple[int, int, int]] = []  # (num_q_tokens, num_requests, ns)
        original = self.manager._generation_loop_body

        def body(bp: Any, bootstrapping: bool) -> bool:
            before = getattr(self.manager, "current_batch", 0)
            t0 = time.perf_counter_ns()
            keep = original(bp, bootstrapping)
            if getattr(self.manager, "current_batch", 0) != before:
                # num_q_tokens is padded to a graph bucket under CUDA graphs: count the requests' real query tokens.
                reqs = bp.inputs_and_outputs.requests_in_batch
                self.records.append((sum(int(r.query_length) for r in reqs), len(reqs), time.perf_counter_ns() - t0))
            return keep

        self.manager._generation_loop_body = body
        self.manager.start()
        self._seed = 0

    def _add(self, n: int, new_tokens: int) -> str:
        self._seed += 1
        rid = self.manager.add_request(_prompt(n, self.vocab, self._seed), max_new_tokens=new_tokens, eos_token_id=-1)
        return str(rid)

    def _wait(self, ids: set[str], timeout_s: float = 600.0) -> None:
        deadline = time.monotonic() + timeout_s
        while ids:
            if time.monotonic() > deadline:
                raise EnvironmentUnavailableError(f"continuous batching returned no result for {sorted(ids)} within {timeout_s:.0f} s")
            out = self.manager.get_result(timeout=1.0)
            if out is not None:
                ids.discard(str(out.request_id))
            elif not self.manager.is_running():
                raise EnvironmentUnavailableError("the continuous-batching loop stopped while profiling; see the log above")

    def _select(self, q: int, reqs: int, start: int) -> np.ndarray:
        return np.array([ns for nq, nr, ns in self.records[start:] if nq == q and nr == reqs])

    def _wait_for(self, q: int, reqs: int, start: int) -> None:
        deadline = time.monotonic() + 600.0
        while not len(self._select(q, reqs, start)):
            if time.monotonic() > deadline or not self.manager.is_running():
                raise EnvironmentUnavailableError(f"continuous batching never ran an iteration of {reqs} requests / {q} tokens")
            time.sleep(0.001)

    def measure(self, shape: BatchShape) -> np.ndarray:
        times = self._measure(shape)
        if not len(times):
            raise EnvironmentUnavailableError(f"continuous batching never ran an iteration of shape {shape}; pick another shape")
        return times

    def _measure(self, shape: BatchShape) -> np.ndarray:
        start = len(self.records)
        if shape.kind == "prefill":
            for _ in range(self.samples + 1):
                self._wait({self._add(shape.prefill_tokens, 1)})
            return self._select(shape.prefill_tokens, 1, start)[1:]
        b = shape.decode_batch
        if shape.kind == "decode":
            # Early requests decode while later prompts still prefill: outlast those iterations too.
            filling = b + -(-b * shape.decode_kv // (self.backend.max_batch_tokens or shape.decode_kv))
            self._wait({self._add(shape.decode_kv, self.samples + 3 + filling) for _ in range(b)})
            return self._select(b, b, start)[1:self.samples + 1]
        decoders = {self._add(shape.decode_kv, 4 * self.samples + 16) for _ in range(b)}
        self._wait_for(b, b, start)
        for _ in range(self.samples + 1):
            self._wait({self._add(shape.prefill_tokens, 1)})
        times = self._select(shape.num_tokens, b + 1, start)[1:]
        self._wait(decoders)
        return times

    def close(self) -> None:
        self.manager.stop(block=True, timeout=60)


TIMERS: dict[str, Callable[[Any, BackendConfig, int], IterationTimer]] = {
    "hf-generate": GenerateTimer,
    "hf-continuous": ContinuousTimer,
}


def make_timer(model: Any, backend: BackendConfig, samples: int) -> IterationTimer:
    factory = TIMERS.get(backend.name)
    if factory is None:
        raise EnvironmentUnavailableError(
            f"vidur-profile cannot time whole iterations of backend={backend.name!r} (supported: {sorted(TIMERS)})"
        )
    return factory(model, backend, samples)
