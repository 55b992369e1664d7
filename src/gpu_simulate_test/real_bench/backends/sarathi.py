"""``sarathi``: sarathi-serve, when a local checkout is installed (see ``extern/README.md``).

sarathi-serve is not on PyPI and needs its own CUDA build; an unrelated PyPI package is also called
``sarathi``, so the check looks for sarathi-serve's own engine module, not just the name.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from gpu_simulate_test.errors import EnvironmentUnavailableError
from gpu_simulate_test.real_bench.backends.base import Backend, register_backend
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

ENGINE_MODULE = "sarathi.engine.llm_engine"
INSTALL_HINT = (
    "sarathi-serve is not installed here (no importable {module}; the PyPI package named 'sarathi' is a different "
    "project). It is not on PyPI and needs its own CUDA build: clone https://github.com/microsoft/sarathi-serve, "
    "build it into this environment as extern/README.md describes, or use backend=hf-continuous"
)


def sarathi_serve_available() -> bool:
    try:
        return importlib.util.find_spec(ENGINE_MODULE) is not None
    except ModuleNotFoundError:
        return False


@register_backend("sarathi")
class SarathiBackend(Backend):
    def load(self) -> str:
        if not sarathi_serve_available():
            raise EnvironmentUnavailableError(INSTALL_HINT.format(module=ENGINE_MODULE))
        raise EnvironmentUnavailableError(
            "sarathi-serve is importable, but real-bench has no driver for it yet (only the install check exists); "
            "use backend=hf-continuous, or see extern/README.md for the status of the sarathi driver"
        )

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        raise EnvironmentUnavailableError(INSTALL_HINT.format(module=ENGINE_MODULE))

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        raise EnvironmentUnavailableError(INSTALL_HINT.format(module=ENGINE_MODULE))

    def wait_all(self) -> None:
        raise EnvironmentUnavailableError(INSTALL_HINT.format(module=ENGINE_MODULE))

    def stop(self) -> None:
        """Nothing was started."""

    def close(self) -> None:
        """Nothing was loaded."""

    def settings(self) -> dict[str, Any]:
        return {"name": self.name}
