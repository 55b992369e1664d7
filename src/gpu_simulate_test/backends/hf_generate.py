"""``hf-generate``: one request at a time through ``model.generate``, FIFO.

Per-token times come from a logits processor: ``generate`` calls it once per generated token, right
after that step's forward pass; it synchronizes the device and stamps ``perf_counter_ns``. The same
stamps delimit the engine's iterations (prefill, then one decode step per token, batch size 1).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Optional

from gpu_simulate_test.backends import _hf
from gpu_simulate_test.backends.base import Backend, register_backend
from gpu_simulate_test.backends.recorder import StepItem
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.modeling import device_sync, load_model
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

CACHES = ("dynamic", "static")


class _Stopped(Exception):
    """Raised inside ``generate`` (from the per-token hook) to abandon the request on stop."""


def _token_hook(sync: Any, times: list[int], stop: threading.Event) -> Any:
    from transformers import LogitsProcessor

    class TokenTimes(LogitsProcessor):
        """Stamps each generated token: the step's logits are ready once the device is synced."""

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            sync()
            times.append(time.perf_counter_ns())
            if stop.is_set():
                raise _Stopped()
            return scores

    return TokenTimes()


def _recompilations() -> int:
    """Graphs dynamo compiled so far in this process (a new one during the run is a recompilation)."""
    import torch._dynamo.utils as dynamo_utils

    return int(dynamo_utils.counters["stats"]["unique_graphs"])


@register_backend("hf-generate")
class HFGenerateBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.cache_implementation not in CACHES:
            raise InputError(f"backend.cache_implementation must be one of {CACHES}, not {self.cfg.cache_implementation!r}")
        if self.cfg.static_cache_bucket < 1:
            raise InputError("backend.static_cache_bucket must be >= 1")
        self._queue: queue.Queue[Optional[tuple[WorkloadRequest, list[int]]]] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Condition()  # notified whenever a request leaves the engine
        self._pending = 0
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._static_cache: Any = None
        self._max_cache_len: Optional[int] = None
        self._graphs_at_start = 0
        self._graphs_at_end = 0

    def check_workload(self, workload: Workload) -> None:
        super().check_workload(workload)
        bucket = self.cfg.static_cache_bucket
        self._max_cache_len = min(math.ceil(workload.max_context / bucket) * bucket, self.model_cfg.max_position_embeddings)

    def load(self) -> str:
        import torch
        from transformers import StaticCache

        loaded = load_model(self.model_cfg, self.hardware_cfg, attn_implementation=self.cfg.attn_implementation,
                            sdpa_kernels=self.cfg.sdpa_kernels, seed=self.seed)
        self.model, self.device, self.sdpa_kernels = loaded.model, loaded.device, loaded.sdpa_kernels
        self._sync = device_sync(self.device)
        self._gen_kwargs = {
            "do_sample": False,
            "pad_token_id": _hf.pad_token_id(self.model),
            "eos_token_id": _hf.eos_token_ids(self.model),
            "disable_compile": not self.cfg.compile,
        }
        if self.cfg.cache_implementation == "static":
            # One cache of one shape for the whole run, reset between requests: no per-request recompilation.
            self._static_cache = StaticCache(config=self.model.config, max_cache_len=self._max_cache_len)
        self._torch = torch
        return loaded.weights_source

    def torch_model(self) -> Any:
        return self.model

    def _generate(self, prompt: list[int], num_decode: int, hook: Any) -> Any:
        torch = self._torch
        ids = torch.tensor([prompt], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {}
        if self._static_cache is not None:
            self._static_cache.reset()
            kwargs["past_key_values"] = self._static_cache
        from transformers import GenerationConfig, LogitsProcessorList

        gen = GenerationConfig(
            **self._gen_kwargs,
            max_new_tokens=num_decode,
            min_new_tokens=None if self.cfg.early_stop else num_decode,  # exact lengths: EOS is suppressed
        )
        # generate() runs under no_grad itself; inference_mode would make the lazily allocated static cache
        # "inference tensors", which its reset() (an in-place update outside that mode) then refuses.
        return self.model.generate(
            ids, attention_mask=torch.ones_like(ids), generation_config=gen, logits_processor=LogitsProcessorList([hook]), **kwargs
        )

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """Longest prompt first (allocator high-water mark), then the shortest (a second shape for dynamo)."""
        reqs = sorted(workload.requests, key=lambda r: r.num_prefill_tokens, reverse=True)
        picks = [reqs[0], reqs[-1], *reqs[1:-1]][: max(self.cfg.warmup_requests, 0)]
        for r in picks:
            self._generate(prompts[r.request_id], min(r.num_decode_tokens, 8), _token_hook(self._sync, [], threading.Event()))
        self._graphs_at_start = _recompilations()

    def start(self, recorder: Any) -> None:
        super().start(recorder)
        self._thread = threading.Thread(target=self._loop, name="hf-generate-engine", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            try:
                self._run_one(*item)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by wait_all
                self._error = exc
                return
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _run_one(self, req: WorkloadRequest, prompt: list[int]) -> None:
        rec = self.recorder
        assert rec is not None
        times: list[int] = []
        start = time.perf_counter_ns()
        self._generate(prompt, req.num_decode_tokens, _token_hook(self._sync, times, self._stop))
        rel = [rec.clock.rel(t) for t in times]
        rec.finish(req.request_id, rel)
        rec.iteration(rec.clock.rel(start), rel[0], [StepItem(req.request_id, req.num_prefill_tokens, True)])
        for a, b in zip(rel, rel[1:]):
            rec.iteration(a, b, [StepItem(req.request_id, 1, False)])

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        assert self.recorder is not None
        dispatched = self.recorder.clock.now()  # stamped before the put, so no token can precede it
        with self._idle:
            self._pending += 1
        self._queue.put((request, prompt))
        return dispatched

    def wait_all(self) -> None:
        with self._idle:
            while self._pending and self._thread is not None and self._thread.is_alive():
                self._idle.wait(0.1)  # short waits keep Ctrl-C responsive
        self._graphs_at_end = _recompilations()
        if self._error is not None:
            raise self._error

    def failure(self) -> Optional[BaseException]:
        return self._error

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.1)  # short joins keep Ctrl-C responsive
        self._graphs_at_end = _recompilations()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scheduler": "fifo, one request at a time",
            "cache_implementation": self.cfg.cache_implementation,
            "static_max_cache_len": self._max_cache_len if self.cfg.cache_implementation == "static" else None,
            "compile": self.cfg.compile,
            "attn_implementation": self.cfg.attn_implementation,
            "sdpa_kernels": self.sdpa_kernels,
            "early_stop": self.cfg.early_stop,
            "warmup_requests": self.cfg.warmup_requests,
            "token_time_source": "logits-processor hook after a device sync, perf_counter_ns",
        }

    def run_stats(self) -> dict[str, Any]:
        return {"recompilations_during_run": self._graphs_at_end - self._graphs_at_start}
