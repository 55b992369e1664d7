"""``native``: the project's own engine (``gpu_simulate_test.engine``), whose scheduler is vidur-sim's policy.

A thin adaptor. The limits come from ``config/limits.py`` and reach the engine under their own names
(:func:`engine_config`, the one place where ``backend.vidur_scheduler`` becomes the engine's ``policy``). The weights
come from the transformers model ``modeling.load_model`` builds (from_pretrained or random, as the HF backends do),
handed to the engine as a CPU state dict; that model is then dropped, so the device holds the weights once.

The engine has no thread of its own: ``submit`` (real-bench's replay thread) hands each request straight to the
engine's ``add_request`` (thread-safe), with its workload arrival time (the policies order restarted requests by
arrival, as Vidur does); the engine queues it at the end of the iteration in flight, where Vidur would. The
driver's thread calls ``step()`` while anything is unfinished and waits for a submission otherwise. Each step
becomes one row of ``iteration_metrics.csv`` exactly as the engine formed it (entries in the policy's order, their
tokens, each request's KV length after the step) from the step's own ``start_ns`` (its batch decided) to its
``end_ns`` (sampled tokens on the host); every token a step yields is stamped with that end. Dispatch is stamped at
``submit``, before the request is handed to the engine.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import replace
from typing import Any, Optional, Sequence

from gpu_simulate_test.backends.base import Backend, register_backend
from gpu_simulate_test.backends.recorder import Recorder, StepItem
from gpu_simulate_test.config.limits import Limits, workload_kv_blocks
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.engine import source_fingerprint
from gpu_simulate_test.engine.config import EngineConfig, ModelShape
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.modeling import load_model
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

log = logging.getLogger(__name__)

WARMUP_DECODE_TOKENS = 8  # tokens each warm-up request generates (at most its workload count)
STOP_TIMEOUT_S = 60.0  # how long a stop waits for the step in progress
# Counters of engine.stats() that must not move once the clock runs (compiling or capturing inside a measured step
# inflates it), and the preemptions of the run itself; reported as "<name>_during_run".
_RUN_COUNTERS = {"cuda_graph_captures": "cuda_graph_captures_since_startup",
                 "compilations": "compilations_since_startup", "preemptions": "preemptions"}


def uncaptured_tokens(graph_sizes: Sequence[int], graph_token_sizes: Sequence[int], token_budget: int) -> Optional[int]:
    """The largest token bucket of an engine that captures graphs, where steps may hold more tokens than it (those run
    eagerly: ~13-21 ms for a 1,024-token prefill on the H200 against ~3 ms from a graph), else None."""
    if not graph_sizes:
        return None
    largest = max(graph_token_sizes, default=0)
    return largest if largest < token_budget else None


def model_shape(model: ModelConfig) -> ModelShape:
    return ModelShape(
        hidden_size=model.hidden_size, num_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_kv_heads=model.num_kv_heads, head_dim=model.head_dim, intermediate_size=model.intermediate_size,
        vocab_size=model.vocab_size, max_position_embeddings=model.max_position_embeddings,
        rope_theta=float(model.rope_theta), rms_norm_eps=float(model.rms_norm_eps),
        tie_word_embeddings=bool(model.tie_word_embeddings),
    )


def engine_config(limits: Limits, model: ModelConfig, *, dtype: str, device: str,
                  cuda_graph_batch_sizes: Sequence[int] = (), cuda_graph_token_sizes: Sequence[int] = (),
                  seed: int = 0) -> EngineConfig:
    """The engine's config from the resolved limits, each knob under the name it has in ``configs/backend``;
    ``backend.vidur_scheduler`` becomes ``policy`` here and nowhere else."""
    return EngineConfig(
        model=model_shape(model), policy=limits.policy, max_batch_tokens=limits.token_budget,
        max_requests_per_batch=limits.batch_cap, block_size=limits.block_size, num_blocks=limits.num_blocks,
        gpu_memory_utilization=limits.gpu_memory_utilization,
        watermark_blocks_fraction=limits.watermark_blocks_fraction, dtype=dtype, device=device,
        cuda_graph_batch_sizes=tuple(int(b) for b in cuda_graph_batch_sizes),
        cuda_graph_token_sizes=tuple(int(t) for t in cuda_graph_token_sizes), seed=seed,
    )


@register_backend("native")
class NativeBackend(Backend):
    # The engine sizes its KV pool when it loads (num_blocks: null): vidur-sim needs the count the run recorded.
    kv_pool_from_run = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.early_stop:
            raise InputError("backend=native always generates exactly num_decode_tokens (EOS is ignored); "
                             "set backend.early_stop=false")
        self.engine: Any = None  # gpu_simulate_test.engine.engine.LLMEngine, once loaded
        self._workload: Optional[Workload] = None
        self._cond = threading.Condition()  # guards the counts and the stop flag; wakes the idle engine thread
        self._submitted = 0
        self._finished = 0
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._times: dict[int, list[int]] = {}
        self._at_start: dict[str, int] = {}

    def check_workload(self, workload: Workload) -> None:
        """The base checks and limits; on the CPU ``num_blocks: null`` is sized from the workload (the engine sizes
        it from GPU memory only). The requests themselves are checked by the engine once it is built (``load``)."""
        super().check_workload(workload)
        if self.limits.num_blocks is None and self.hardware_cfg.device == "cpu":
            self._limits = replace(self.limits, num_blocks=workload_kv_blocks(self.limits, workload.max_context))
        self._workload = workload

    def load(self) -> str:
        import torch

        from gpu_simulate_test.engine import pinned_code
        from gpu_simulate_test.engine.engine import LLMEngine

        if self._workload is None:
            raise RuntimeError("backend native: check_workload() comes before load()")
        if pinned_code() is not None:  # its ids would name another engine than the one measured
            raise InputError(f"backend native: ids name engine {pinned_code()} (engine.measured_with), not this one")
        loaded = load_model(self.model_cfg, self.hardware_cfg, attn_implementation=self.cfg.attn_implementation,
                            sdpa_kernels=self.cfg.sdpa_kernels, seed=self.seed)
        weights, device, self.sdpa_kernels = loaded.weights_source, loaded.device, loaded.sdpa_kernels
        state = {name: t.detach().to("cpu") for name, t in loaded.model.state_dict().items()}
        config = engine_config(self.limits, self.model_cfg, dtype=str(loaded.dtype).removeprefix("torch."),
                               device=device.type, cuda_graph_batch_sizes=self.cfg.cuda_graph_batch_sizes,
                               cuda_graph_token_sizes=self.cfg.cuda_graph_token_sizes, seed=self.seed)
        del loaded  # the transformers model: the engine gets its weights from ``state``
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        self.engine = LLMEngine(config, state)
        del state
        eager_above = uncaptured_tokens(self.engine.runner.graph_sizes, self.engine.runner.graph_token_sizes,
                                        self.limits.token_budget)
        if eager_above is not None:
            log.warning("backend native: steps of more than %d tokens run eagerly, bound by the host's kernel launches "
                        "(backend.max_batch_tokens=%d); list token buckets up to it in backend.cuda_graph_token_sizes "
                        "to run them from CUDA graphs", eager_above, self.limits.token_budget)
        where = self._workload.path / "trace_lengths.csv"
        for r in self._workload.requests:  # every request, before any is sent
            try:
                self.engine.check_request(r.num_prefill_tokens, r.num_decode_tokens)
            except InputError as exc:
                raise InputError(f"{where}: request {r.request_id}: {exc}") from None
        return weights

    def native_engine(self) -> Any:
        return self.engine

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """A few workload prompts at once (longest first), stepped to completion on this thread. The engine compiled
        its kernels and captured its graphs when it was built; this runs the host path and the allocator."""
        reqs = sorted(workload.requests, key=lambda r: r.num_prefill_tokens, reverse=True)
        for i, r in enumerate(reqs[: max(self.cfg.warmup_requests, 0)]):
            self.engine.add_request(-1 - i, prompts[r.request_id], min(r.num_decode_tokens, WARMUP_DECODE_TOKENS))
        while self.engine.has_unfinished():
            self.engine.step()

    def start(self, recorder: Recorder) -> None:
        super().start(recorder)
        stats = self.engine.stats()
        self._at_start = {name: int(stats[key]) for name, key in _RUN_COUNTERS.items()}
        self._thread = threading.Thread(target=self._loop, name="native-engine", daemon=True)
        self._thread.start()

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        assert self.recorder is not None
        if self._error is not None:
            raise self._loop_error() from self._error
        dispatched = self.recorder.clock.now()  # before the engine can see it: no token can precede it
        with self._cond:
            self._times[request.request_id] = []
            self.engine.add_request(request.request_id, prompt, request.num_decode_tokens,
                                    arrival_time_ns=request.arrival_time_ns)
            self._submitted += 1
            self._cond.notify_all()
        return dispatched

    def _loop(self) -> None:
        engine = self.engine
        try:
            while True:
                with self._cond:
                    while not (engine.has_unfinished() or self._stopping):
                        self._cond.wait()
                    if self._stopping:
                        return
                self._record(engine.step())
        except BaseException as exc:  # noqa: BLE001 - handed to wait_all on the main thread
            self._error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _record(self, out: Any) -> None:
        """One engine step (``StepOutput``) into the recorder: its row, its tokens, the requests it finished."""
        rec = self.recorder
        assert rec is not None
        start, end = rec.clock.rel(out.start_ns), rec.clock.rel(out.end_ns)
        rec.iteration(start, end, [StepItem(e.request_id, e.num_tokens, e.is_prefill, e.context_len)
                                   for e in out.entries])
        for rid, _token in out.new_tokens:
            self._times[rid].append(end)
        for rid in out.finished:
            rec.finish(rid, self._times.pop(rid))
        if out.finished:
            with self._cond:
                self._finished += len(out.finished)
                self._cond.notify_all()

    def wait_all(self) -> None:
        with self._cond:
            while self._finished < self._submitted and self._error is None and self._thread is not None \
                    and self._thread.is_alive():
                self._cond.wait(0.1)  # short waits keep Ctrl-C responsive
        if self._error is not None:
            raise self._loop_error() from self._error
        if self._finished < self._submitted:
            raise RuntimeError("the native engine loop stopped with requests pending")

    def failure(self) -> Optional[BaseException]:
        return self._error

    def _loop_error(self) -> RuntimeError:
        return RuntimeError(f"the native engine loop failed: {type(self._error).__name__}: {self._error}")

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    def close(self) -> None:
        self.stop()
        if self.engine is not None:
            cuda = self.engine.runner.device.type == "cuda"
            self.engine = None
            gc.collect()
            if cuda:
                import torch

                torch.cuda.empty_cache()

    def settings(self) -> dict[str, Any]:
        """The engine's settings as it resolved them: the KV pool it got above all (vidur-sim mirrors it)."""
        if self.engine is None:
            return {"name": self.name}
        stats = self.engine.stats()
        lim = self.limits
        return {
            "name": self.name,
            "engine_code": source_fingerprint(),  # what ran, whatever git says on the machine that ran it
            "scheduler": f"{lim.policy} (the engine's own transcription of vidur-sim's {lim.policy} scheduler; "
                         "specs/engine.md)",
            "max_batch_tokens": lim.token_budget,
            "max_requests_per_batch": lim.batch_cap,
            "num_blocks": stats["num_blocks"],
            "block_size": stats["block_size"],
            "watermark_blocks_fraction": lim.watermark_blocks_fraction,
            "gpu_memory_utilization": lim.gpu_memory_utilization,
            "kv_pool": "gpu_memory_utilization of the device's memory (vLLM's rule)" if stats["memory"] is not None
                       else ("backend.num_blocks" if self.cfg.num_blocks is not None
                             else "sized from the workload on the CPU (config/limits.workload_kv_blocks)"),
            "memory": stats["memory"],
            "cuda_graph_batch_sizes": stats["cuda_graph_batch_sizes"],
            "cuda_graph_token_sizes": stats["cuda_graph_token_sizes"],
            "kernel_path": stats["kernel_path"],
            "dtype": self.engine.config.dtype,
            "device": self.engine.config.device,
            "sdpa_kernels": self.sdpa_kernels,
            "early_stop": False,
            "warmup_requests": self.cfg.warmup_requests,
            "token_time_source": "the end of the engine step that sampled the token (perf_counter_ns, tokens on "
                                 "the host)",
        }

    def run_stats(self) -> dict[str, Any]:
        """The engine's ``stats()`` at the end, and what moved since the clock started (captures and compilations
        must not: 0 expected)."""
        if self.engine is None:
            return {}
        stats = self.engine.stats()
        during = {f"{name}_during_run": int(stats[key]) - self._at_start.get(name, 0)
                  for name, key in _RUN_COUNTERS.items()}
        return {**during, "engine": stats}
