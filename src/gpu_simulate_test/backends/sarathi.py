"""``sarathi``: sarathi-serve's engine (``LLMEngine``, ``SarathiScheduler``), when a local checkout is installed.

sarathi-serve is not on PyPI and needs its own CUDA build; an unrelated PyPI package is also called
``sarathi``, so the check looks for sarathi-serve's own engine module, not just the name. The driver was
written against microsoft/sarathi-serve 96f9911 (see ``extern/README.md``) and tested against a fake of
that API only.

Settings, from the resolved limits (``config/limits.py``): the token budget -> ``SarathiSchedulerConfig.chunk_size``
(``max_batch_tokens: null``: the workload's longest prompt), the batch cap -> ``max_num_seqs``, ``block_size`` ->
``CacheConfig.block_size``, ``gpu_memory_utilization`` -> ``WorkerConfig`` (the engine profiles its KV block count
from it; the count is read back into ``settings()``), metrics off, one GPU. The engine has no thread of its own: a
driver thread calls ``step()`` in a loop. The replay thread calls ``add_request`` directly; it and the scheduler's
``schedule()`` (wrapped on the instance) share one lock, which keeps the scheduler's queues consistent
and puts every dispatch stamp (taken when ``add_request`` returns) before the step that first schedules
the request. The wrapped ``schedule()`` also yields each step's batch (``scheduled_seq_metadata_list``:
request, chunk length, prompt or decode) and its preemptions. Token times: the run clock read as soon as
``step()`` returns, i.e. after the workers' sampled tokens reached the engine process.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from gpu_simulate_test.backends._model_dir import ModelDir, model_dir
from gpu_simulate_test.backends.base import Backend, register_backend
from gpu_simulate_test.backends.recorder import Recorder, StepItem
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.modeling import resolve_device, torch_dtype
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

ENGINE_MODULE = "sarathi.engine.llm_engine"
INSTALL_HINT = (
    "sarathi-serve is not installed here (no importable {module}; the PyPI package named 'sarathi' is a different "
    "project). It is not on PyPI and needs its own CUDA build: clone https://github.com/microsoft/sarathi-serve, "
    "build it into this environment as extern/README.md describes, or use backend=hf-continuous"
)
SARATHI_WATERMARK = 0.01  # BaseBlockSpaceManager's default; the engine passes no other
IDLE_WAIT_S = 0.05  # the idle engine thread re-checks this often even without a wake-up
STOP_TIMEOUT_S = 60.0  # how long a stop waits for the step in progress
_WARMUP_PREFIX = "warmup-"


def sarathi_serve_available() -> bool:
    try:
        return importlib.util.find_spec(ENGINE_MODULE) is not None
    except ModuleNotFoundError:
        return False


def _rid(seq_id: str) -> Optional[int]:
    """Our integer id from the engine's ``r<id>``; None for warm-up requests."""
    return int(seq_id[1:]) if seq_id.startswith("r") else None


def _check_architecture(model: str, mdir: ModelDir) -> None:
    """sarathi-serve implements a fixed set of architectures (96f9911: no Qwen2/Qwen3); refuse the others before
    the engine starts, instead of letting its workers fail on them."""
    from sarathi.model_executor import model_loader

    known = getattr(model_loader, "_MODEL_REGISTRY", None)
    archs = json.loads((mdir.path / "config.json").read_text()).get("architectures") or []
    if known is not None and not any(a in known for a in archs):
        raise EnvironmentUnavailableError(
            f"model {model}: the installed sarathi-serve has no implementation of {archs} (it has {sorted(known)}); add "
            "one to its sarathi/model_executor/models, pick a model it implements, or use backend=hf-continuous"
        )


@register_backend("sarathi")
class SarathiBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine: Any = None
        self._scratch: Optional[Path] = None
        self._settings: dict[str, Any] = {"name": self.name}
        self._schedule_lock = threading.Lock()
        self._scheduled: Any = None  # the SchedulerOutputs of the step in progress
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._submitted = 0
        self._finished = 0
        self._times: dict[int, list[int]] = {}
        self._num_decode: dict[int, int] = {}
        self._preemptions = 0

    def check_workload(self, workload: Workload) -> None:
        """Refuse, before anything loads, the settings sarathi-serve cannot honour."""
        super().check_workload(workload)
        if self.limits.num_blocks is not None:
            raise InputError(
                "backend.num_blocks must be null for backend=sarathi: sarathi-serve sizes its KV cache by profiling with "
                "backend.gpu_memory_utilization; the resulting block count is recorded in run_meta.json (backend.num_blocks) "
                "for vidur-sim to mirror"
            )
        if self.limits.watermark_blocks_fraction != SARATHI_WATERMARK:
            raise InputError(
                f"backend.watermark_blocks_fraction={self.limits.watermark_blocks_fraction}, but sarathi-serve's block "
                f"manager always keeps {SARATHI_WATERMARK}; set it to {SARATHI_WATERMARK} so that vidur-sim mirrors the engine"
            )

    def load(self) -> str:
        if not sarathi_serve_available():
            raise EnvironmentUnavailableError(INSTALL_HINT.format(module=ENGINE_MODULE))
        if self.hardware_cfg.device != "cuda":
            raise InputError(f"backend=sarathi runs on CUDA GPUs only; hardware={self.hardware_cfg.name} is {self.hardware_cfg.device}")
        resolve_device(self.hardware_cfg)  # a GPU is there and is the one configured
        dtype = str(torch_dtype(self.model_cfg, self.hardware_cfg)).removeprefix("torch.")
        self._scratch = Path(tempfile.mkdtemp(prefix="gst-sarathi-"))
        mdir = model_dir(self.model_cfg, dtype, self._scratch / "model")
        _check_architecture(self.model_cfg.name, mdir)
        self.engine = self._build_engine(mdir, dtype)
        self._instrument()
        self._settings = self._resolved_settings(mdir)
        return mdir.weights_source

    def _build_engine(self, mdir: ModelDir, dtype: str) -> Any:
        from sarathi import LLMEngine
        from sarathi.config import (
            CacheConfig,
            MetricsConfig,
            ModelConfig,
            ParallelConfig,
            ReplicaConfig,
            SarathiSchedulerConfig,
            SystemConfig,
            WorkerConfig,
        )

        assert self._scratch is not None
        config = SystemConfig(
            replica_config=ReplicaConfig(output_dir=str(self._scratch / "output")),
            model_config=ModelConfig(
                model=str(mdir.path),
                load_format="auto" if mdir.pretrained else "dummy",
                dtype=dtype,
                seed=self.seed,
                max_model_len=self.model_cfg.max_position_embeddings,
            ),
            worker_config=WorkerConfig(gpu_memory_utilization=self.limits.gpu_memory_utilization),
            cache_config=CacheConfig(block_size=self.limits.block_size),
            parallel_config=ParallelConfig(pipeline_parallel_size=1, tensor_parallel_size=1),
            scheduler_config=SarathiSchedulerConfig(chunk_size=self.limits.token_budget, max_num_seqs=self.limits.batch_cap),
            metrics_config=MetricsConfig(write_metrics=False, enable_chrome_trace=False),
        )
        return LLMEngine.from_system_config(config)

    def _instrument(self) -> None:
        """See each step's batch, and serialise scheduling with ``add_request`` (see the module docstring)."""
        schedule = self.engine.scheduler.schedule

        def locked_schedule() -> Any:
            with self._schedule_lock:
                self._scheduled = schedule()
            return self._scheduled

        self.engine.scheduler.schedule = locked_schedule

    def _sampling_params(self, num_decode: int) -> Any:
        from sarathi import SamplingParams

        return SamplingParams(temperature=0.0, top_p=1.0, top_k=-1, ignore_eos=not self.cfg.early_stop, max_tokens=num_decode)

    def _add(self, seq_id: str, prompt: list[int], num_decode: int) -> int:
        """Hand one request to the engine; returns ``perf_counter_ns`` when ``add_request`` returned."""
        with self._schedule_lock:
            self.engine.add_request(None, self._sampling_params(num_decode), prompt_token_ids=list(prompt), seq_id=seq_id)
            return time.perf_counter_ns()

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """A few workload prompts at once (longest first), stepped to completion on this thread."""
        reqs = sorted(workload.requests, key=lambda r: r.num_prefill_tokens, reverse=True)[: max(self.cfg.warmup_requests, 0)]
        for i, r in enumerate(reqs):
            self._add(f"{_WARMUP_PREFIX}{i}", prompts[r.request_id], min(r.num_decode_tokens, 8))
        while self.engine.has_unfinished_requests():
            self.engine.step()

    def start(self, recorder: Recorder) -> None:
        super().start(recorder)
        self._scheduled = None
        self._thread = threading.Thread(target=self._loop, name="sarathi-engine", daemon=True)
        self._thread.start()

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        assert self.recorder is not None
        if self._error is not None:
            raise self._loop_error() from self._error
        rid = request.request_id
        self._times[rid] = []
        self._num_decode[rid] = request.num_decode_tokens
        with self._cond:
            self._submitted += 1
        dispatched = self._add(f"r{rid}", prompt, request.num_decode_tokens)
        self._wake.set()
        return self.recorder.clock.rel(dispatched)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                if not self.engine.has_unfinished_requests():
                    self._wake.wait(IDLE_WAIT_S)
                    continue
                self._step()
        except BaseException as exc:  # noqa: BLE001 - handed to wait_all on the main thread
            self._error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _step(self) -> None:
        start = time.perf_counter_ns()
        outputs = self.engine.step()
        end = time.perf_counter_ns()
        sched, self._scheduled = self._scheduled, None
        rec = self.recorder
        assert rec is not None
        if sched is not None and not sched.is_empty():
            items = [
                StepItem(rid, md.num_tokens, md.is_prompt)
                for md in sched.scheduled_seq_metadata_list
                if (rid := _rid(md.seq_id)) is not None
            ]
            if items:
                rec.iteration(rec.clock.rel(start), rec.clock.rel(end), items)
        lost = self._on_preemptions(sched.preempted_seq_ids if sched is not None else [])
        for out in outputs:
            if _rid(out.seq_id) not in lost:
                self._on_output(out, rec.clock.rel(end))
        if lost:
            rid, n = next(iter(lost.items()))
            raise RuntimeError(
                f"sarathi-serve preempted request {rid} after {n} tokens (out of KV blocks); its restart folds them into the "
                "prompt and generates max_tokens afresh, so the workload's decode lengths cannot be kept. Raise "
                "backend.gpu_memory_utilization or lower backend.max_requests_per_batch"
            )

    def _on_output(self, out: Any, time_ns: int) -> None:
        rid = _rid(out.seq_id)
        if rid is None:
            return
        times = self._times[rid]
        new = len(out.token_ids) - len(times)
        if new > 1 or new < 0:
            raise RuntimeError(f"sarathi-serve reported {len(out.token_ids)} tokens for request {rid} after {len(times)}; expected one more per step")
        times.extend([time_ns] * new)
        if not out.finished:
            return
        if not times:
            raise RuntimeError(f"sarathi-serve finished request {rid} without a token (ignored: prompt over max_model_len?)")
        if not self.cfg.early_stop and len(times) != self._num_decode[rid]:
            raise RuntimeError(f"sarathi-serve generated {len(times)} tokens for request {rid}, not {self._num_decode[rid]}")
        assert self.recorder is not None
        self.recorder.finish(rid, times)
        with self._cond:
            self._finished += 1
            self._cond.notify_all()

    def _on_preemptions(self, seq_ids: list[str]) -> dict[int, int]:
        """Count restarts before the first token (they only repeat the prompt); return those after it
        ({request: tokens so far}), whose exact lengths are lost."""
        lost: dict[int, int] = {}
        for seq_id in seq_ids:
            rid = _rid(seq_id)
            if rid is not None and self._times[rid]:
                lost[rid] = len(self._times[rid])
            elif rid is not None:
                self._preemptions += 1
        return lost

    def wait_all(self) -> None:
        with self._cond:
            while self._finished < self._submitted and self._error is None and self._thread is not None and self._thread.is_alive():
                self._cond.wait(0.1)
        if self._error is not None:
            raise self._loop_error() from self._error
        if self._finished < self._submitted:
            raise RuntimeError("the sarathi-serve engine loop stopped with requests pending")

    def failure(self) -> Optional[BaseException]:
        return self._error

    def _loop_error(self) -> RuntimeError:
        return RuntimeError(f"the sarathi-serve engine loop failed: {type(self._error).__name__}: {self._error}")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)  # a step hung on a dead worker must not hang the stop

    def close(self) -> None:
        self.stop()
        if self.engine is not None:
            from sarathi.engine.ray_utils import ray

            zmq_context = getattr(self.engine, "zmq_context", None)
            if zmq_context is not None:
                zmq_context.destroy(linger=0)
            if ray is not None:
                ray.shutdown()  # the engine started Ray and its GPU worker; this ends them
            self.engine = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def run_stats(self) -> dict[str, Any]:
        return {"preemptions_before_first_token": self._preemptions}

    def _resolved_settings(self, mdir: ModelDir) -> dict[str, Any]:
        """The engine's settings after it resolved its defaults (the profiled block count above all)."""
        import sarathi

        c = self.engine.config
        return {
            "name": self.name,
            "sarathi_serve_version": getattr(sarathi, "__version__", None),
            "scheduler": "sarathi (SarathiScheduler: running decodes, then prefill chunks of running, then waiting requests, FCFS)",
            "max_batch_tokens": c.scheduler_config.chunk_size,
            "max_requests_per_batch": c.scheduler_config.max_num_seqs,
            "num_blocks": c.cache_config.num_gpu_blocks,
            "block_size": c.cache_config.block_size,
            "watermark_blocks_fraction": SARATHI_WATERMARK,
            "gpu_memory_utilization": c.worker_config.gpu_memory_utilization,
            "attention_backend": str(getattr(c.worker_config.attention_backend, "value", c.worker_config.attention_backend)),
            "max_model_len": c.model_config.max_model_len,
            "dtype": str(c.model_config.dtype).removeprefix("torch."),
            "load_format": c.model_config.load_format,
            "tokenizer": mdir.tokenizer_source,
            "early_stop": self.cfg.early_stop,
            "warmup_requests": self.cfg.warmup_requests,
            "token_time_source": "run clock read when engine.step() returned (sampled tokens back from the worker)",
        }
