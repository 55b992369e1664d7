"""``hf-continuous``: transformers' continuous-batching manager (FIFO, chunked prefill, paged KV cache).

Settings are explicit so that Vidur's ``sarathi`` scheduler can mirror them: the resolved limits
(``config/limits.py``) give the token budget per step (the chunk size), the batch cap and the KV cache
(``num_blocks`` x ``block_size``); prefix sharing is off and batching is synchronous (one step's results are in
before the next is scheduled).
Token times are the engine's own ``record_timestamps`` (``time.perf_counter()``, taken after the step's
outputs reached the host). Iterations are observed by wrapping the batch processor's own methods:
``prepare_next_batch`` (step start), the scheduler's ``schedule_batch`` (who is in the step, with how
many tokens) and ``update_batch`` (step end, after the token stamps).
"""

from __future__ import annotations

import math
import queue
import time
from typing import Any, Optional

from gpu_simulate_test.backends import _hf
from gpu_simulate_test.backends.base import Backend, register_backend
from gpu_simulate_test.backends.recorder import StepItem
from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.limits import Limits
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.modeling import load_model
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

_WARMUP_PREFIX = "warmup-"
# The engine's own settings read back after it resolved its defaults, under its own names, for run_meta.json.
_RESOLVED = ("max_batch_tokens", "max_requests_per_batch", "num_blocks", "block_size")


def _continuous_batching_config(cfg: BackendConfig, limits: Limits, seed: int) -> Any:
    """The engine settings that mirror Vidur's sarathi policy: FIFO, chunked prefill, no prefix sharing, no async."""
    from transformers import ContinuousBatchingConfig

    return ContinuousBatchingConfig(
        block_size=limits.block_size,
        num_blocks=limits.num_blocks,
        max_batch_tokens=limits.token_budget,
        max_requests_per_batch=limits.batch_cap,
        allow_block_sharing=False,
        use_async_batching=False,
        use_cuda_graph=cfg.use_cuda_graph,
        default_compile_level=1 if cfg.compile else 0,
        scheduler_type="fifo",
        seed=seed,
    )


def _rid(engine_id: str) -> Optional[int]:
    """Our integer id from the engine's ``r<id>``; None for warm-up requests."""
    return int(engine_id[1:]) if engine_id.startswith("r") else None


@register_backend("hf-continuous")
class HFContinuousBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.manager: Any = None
        self._pending: set[str] = set()
        self._step_start = 0
        self._step_items: list[tuple[str, int, bool]] = []
        self._settings: dict[str, Any] = {}
        self._graph_captures = 0
        self._graph_captures_at_start = 0

    def check_workload(self, workload: Workload) -> None:
        super().check_workload(workload)
        blocks, size = self.limits.num_blocks, self.limits.block_size
        if blocks is None:
            return
        for r in workload.requests:
            need = math.ceil((r.num_prefill_tokens + r.num_decode_tokens) / size)
            if need > blocks:
                raise InputError(
                    f"{workload.path / 'trace_lengths.csv'}: request {r.request_id} needs {need} KV blocks "
                    f"({r.num_prefill_tokens}+{r.num_decode_tokens} tokens) but the cache holds {blocks} "
                    f"x {size} = {blocks * size} tokens; raise backend.num_blocks"
                )

    def load(self) -> str:
        from transformers import GenerationConfig

        loaded = load_model(self.model_cfg, self.hardware_cfg, attn_implementation=self.cfg.attn_implementation,
                            sdpa_kernels=self.cfg.sdpa_kernels, seed=self.seed)
        self.model, self.device, self.sdpa_kernels = loaded.model, loaded.device, loaded.sdpa_kernels
        self._eos = _hf.eos_token_ids(self.model) if self.cfg.early_stop else -1  # -1: EOS ignored
        gen = GenerationConfig(do_sample=False, pad_token_id=_hf.pad_token_id(self.model), eos_token_id=self._eos)
        cb = _continuous_batching_config(self.cfg, self.limits, self.seed)
        self.manager = self.model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb)
        self.manager.warmup()  # creates the batch processor (and captures graphs / compiles when asked)
        self._instrument(self.manager.batch_processor)
        self._settings = self._resolved_settings()
        self.manager.start()
        return loaded.weights_source

    def torch_model(self) -> Any:
        return self.model

    def _instrument(self, bp: Any) -> None:
        """Observe each engine step through the batch processor's own calls (see the module docstring)."""
        prepare, update, schedule = bp.prepare_next_batch, bp.update_batch, bp.scheduler.schedule_batch

        def prepare_next_batch() -> bool:
            self._step_start = time.perf_counter_ns()
            self._step_items = []
            return prepare()

        def schedule_batch(token_budget: int, cache_budget: int) -> Any:
            out = schedule(token_budget, cache_budget)
            # generated_len() == 0: the step works on the prompt (the last chunk also yields token 0).
            self._step_items = [(fs.state.request_id, fs.query_length, fs.state.generated_len() == 0) for fs in out[0] or []]
            return out

        def update_batch() -> None:
            update()
            end = time.perf_counter_ns()
            rec = self.recorder
            items = [StepItem(rid, n, pre) for eid, n, pre in self._step_items if (rid := _rid(eid)) is not None]
            if rec is not None and items:
                rec.iteration(rec.clock.rel(self._step_start), rec.clock.rel(end), items)

        bp.prepare_next_batch, bp.update_batch, bp.scheduler.schedule_batch = prepare_next_batch, update_batch, schedule_batch

        # The engine captures a CUDA graph for each new (tokens, KV) bucket when it first meets it; one captured
        # inside the measured run inflates that step, so the run reports how many there were.
        io = bp.inputs_and_outputs
        set_graph = io.set_graph

        def counted_set_graph(graph: Any) -> None:
            self._graph_captures += 1
            set_graph(graph)

        io.set_graph = counted_set_graph

    def _add(self, engine_id: str, prompt: list[int], num_decode: int) -> None:
        got = self.manager.add_request(
            prompt, request_id=engine_id, max_new_tokens=num_decode, record_timestamps=True, eos_token_id=self._eos
        )
        if got is None:
            raise RuntimeError(f"the continuous-batching engine refused request {engine_id} (its loop has stopped)")
        self._pending.add(engine_id)

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """A few workload prompts at once (longest first), through the same manager the run uses."""
        reqs = sorted(workload.requests, key=lambda r: r.num_prefill_tokens, reverse=True)[: max(self.cfg.warmup_requests, 0)]
        for i, r in enumerate(reqs):
            self._add(f"{_WARMUP_PREFIX}{i}", prompts[r.request_id], min(r.num_decode_tokens, 8))
        self._collect(block=True)

    def start(self, recorder: Any) -> None:
        super().start(recorder)
        self._graph_captures_at_start = self._graph_captures

    def run_stats(self) -> dict[str, Any]:
        return {"cuda_graph_captures_during_run": self._graph_captures - self._graph_captures_at_start}

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        assert self.recorder is not None
        self._add(f"r{request.request_id}", prompt, request.num_decode_tokens)
        # Provisional; replaced by the engine's own stamp (taken inside add_request, before the queue put).
        return self.recorder.clock.now()

    def _collect(self, *, block: bool) -> None:
        """Take results off the engine's output queue; ``block``: until nothing is pending."""
        while self._pending:
            out = self.manager.get_result(timeout=0.1 if block else 0)
            if out is None:
                if not self.manager.is_running():
                    raise RuntimeError("the continuous-batching engine loop stopped with requests pending")
                if block:
                    continue
                return
            if not out.is_finished():
                continue
            self._pending.discard(out.request_id)
            if out.error is not None:
                raise RuntimeError(f"the continuous-batching engine failed request {out.request_id}: {out.error}")
            self._record(out)

    def _record(self, out: Any) -> None:
        """A finished request's engine stamps: dispatch (taken inside add_request) and every token time."""
        rid = _rid(out.request_id)
        if rid is not None and self.recorder is not None:
            clock = self.recorder.clock
            self.recorder.dispatch(rid, clock.from_perf_counter(out.created_time))
            self.recorder.finish(rid, [clock.from_perf_counter(t) for t in out.timestamps])

    def wait_all(self) -> None:
        self._collect(block=True)

    def failure(self) -> Optional[BaseException]:
        if self.manager is not None and not self.manager.is_running():
            return RuntimeError("the continuous-batching engine loop has stopped; see the log above")
        return None

    def stop(self) -> None:
        if self.manager is None:
            return
        self.manager.stop(block=True, hard_stop=True)
        self._drain_finished()

    def _drain_finished(self) -> None:
        """After a hard stop: keep the requests that had finished (failed ones were cut short)."""
        q = self.manager.output_router.output_queue
        while True:
            try:
                out = q.get_nowait()
            except queue.Empty:
                return
            if out.error is None and out.is_finished():
                self._record(out)

    def close(self) -> None:
        if self.manager is not None:
            if self.manager.is_running():
                self.manager.stop(block=True)
            self.manager.destroy()
            self.manager = None

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def _resolved_settings(self) -> dict[str, Any]:
        """The engine's settings after it resolved its defaults (read once, while the batch processor exists)."""
        resolved = vars(self.manager.continuous_batching_config)
        cuda_graph = resolved.get("use_cuda_graph")
        return {
            "name": self.name,
            "scheduler": "fifo (transformers FIFOScheduler: decodes first, then prefill chunks)",
            **{key: resolved.get(key) for key in _RESOLVED},
            "prefix_sharing": False,
            "async_batching": False,
            "use_cuda_graph": list(cuda_graph) if isinstance(cuda_graph, tuple) else cuda_graph,
            "default_compile_level": resolved.get("default_compile_level"),
            "safety_margin": float(self.manager.batch_processor.scheduler.safety_margin),
            "attn_implementation": self.cfg.attn_implementation,
            "sdpa_kernels": self.sdpa_kernels,
            "early_stop": self.cfg.early_stop,
            "warmup_requests": self.cfg.warmup_requests,
            "token_time_source": "engine record_timestamps (time.perf_counter), converted to ns",
        }
