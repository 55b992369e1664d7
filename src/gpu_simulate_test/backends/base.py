"""The engine driver interface, and the one registry that maps ``backend.name`` to a driver.

A driver runs one real engine the same way for real-bench (a workload replayed against the clock) and for
vidur-profile (fixed batch shapes, timed step by step): both submit requests and read back the steps the driver
observed, so a profile measures the very code a real run executes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Optional

import pandas as pd

from gpu_simulate_test.backends.recorder import Recorder
from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.limits import Limits, resolve_limits
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.io.schemas import TableSchema
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

BACKENDS: dict[str, type["Backend"]] = {}


def register_backend(name: str) -> Callable[[type["Backend"]], type["Backend"]]:
    """Class decorator: make an engine selectable as ``backend=<name>``."""

    def deco(cls: type[Backend]) -> type[Backend]:
        if name in BACKENDS and BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} registered twice")
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return deco


def get_backend(name: str) -> type["Backend"]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise InputError(f"backend.name {name!r} is not a known backend (known: {sorted(BACKENDS)})") from None


class Backend(ABC):
    """A real engine. Lifecycle: ``check_workload`` -> ``load`` -> [``warmup``] -> ``start`` -> ``submit``* ->
    ``wait_all`` (or ``stop`` on interrupt) -> ``close``; ``submit`` and ``wait_all`` may alternate (vidur-profile
    waits for each batch shape before the next).

    The engine loop runs in a background thread; ``submit`` is called from the caller's (main) thread and must only
    enqueue. Every engine step goes to ``recorder.iteration`` with its requests; token times come from the engine's
    own per-token events.
    """

    name: ClassVar[str] = ""
    # True: with ``num_blocks: null`` the engine sizes its KV pool when it loads, and vidur-sim must be given the
    # count the real run recorded (``real_run=<id>``) rather than size one itself.
    kv_pool_from_run: ClassVar[bool] = False

    def __init__(self, backend: BackendConfig, model: ModelConfig, hardware: HardwareConfig, seed: int) -> None:
        self.cfg = backend
        self.model_cfg = model
        self.hardware_cfg = hardware
        self.seed = seed
        self.recorder: Optional[Recorder] = None
        self.sdpa_kernels: Optional[list[str]] = None  # the SDPA kernels in effect, once ``load`` set them
        self._limits: Optional[Limits] = None

    @property
    def limits(self) -> Limits:
        """The batching and KV limits on the checked workload (:func:`~gpu_simulate_test.config.limits.resolve_limits`)."""
        if self._limits is None:
            raise RuntimeError(f"backend {self.name}: check_workload() resolves the limits; call it first")
        return self._limits

    def check_workload(self, workload: Workload) -> None:
        """Refuse, before anything is loaded, a workload this engine cannot run as specified; resolve the limits."""
        limit = self.model_cfg.max_position_embeddings
        for r in workload.requests:
            if r.num_prefill_tokens + r.num_decode_tokens > limit:
                raise InputError(
                    f"{workload.path / 'trace_lengths.csv'}: request {r.request_id}: prompt ({r.num_prefill_tokens}) + "
                    f"decode ({r.num_decode_tokens}) tokens exceed model {self.model_cfg.name}'s context of {limit}; "
                    "regenerate the workload with a smaller max_context or drop_over_context=true"
                )
        self._limits = resolve_limits(self.cfg, workload.max_prefill, len(workload.requests))

    @abstractmethod
    def load(self) -> str:
        """Load model and engine; return the weights source (``pretrained:<id>`` or ``random``)."""

    def torch_model(self) -> Any:
        """The transformers model the engine runs in this process (vidur-profile times its layers one by one)."""
        raise EnvironmentUnavailableError(
            f"backend {self.name} runs its model outside this process, so vidur-profile cannot time its operators"
        )

    def native_engine(self) -> Any:
        """The native engine (``gpu_simulate_test.engine``) this driver runs, or None: vidur-profile then times
        its own layer methods and kernels instead of ``torch_model()``'s modules."""
        return None

    @abstractmethod
    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """Exercise the engine (compilation, graphs, allocator) before the clock starts."""

    def start(self, recorder: Recorder) -> None:
        """From now on the engine records into ``recorder`` (whose clock has just started)."""
        self.recorder = recorder

    @abstractmethod
    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        """Hand one request to the engine's queue; return the dispatch time (run-relative ns)."""

    @abstractmethod
    def wait_all(self) -> None:
        """Block until every submitted request finished; re-raise an engine failure."""

    def failure(self) -> Optional[BaseException]:
        """Why the engine loop stopped, once it has (None while it runs): lets a waiter give up early."""
        return None

    @abstractmethod
    def stop(self) -> None:
        """Stop now (interrupt or crash): unfinished requests are dropped, finished ones stay recorded."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine (threads, memory). Safe after ``stop`` and after a failed ``load``."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The settings in effect (after the engine resolved its defaults), for ``run_meta.json``."""

    def run_stats(self) -> dict[str, Any]:
        """Engine facts about the measured run (e.g. recompilations); empty when there are none."""
        return {}

    def run_tables(self) -> list[tuple[TableSchema, pd.DataFrame]]:
        """Tables of the run beyond the common ones (e.g. ``request_outcomes.csv`` of a server); none by default."""
        return []
