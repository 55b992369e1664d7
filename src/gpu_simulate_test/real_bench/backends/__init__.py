"""Real engines, one module each, selected by ``backend.name`` through :data:`BACKENDS`."""

from gpu_simulate_test.real_bench.backends import hf_continuous, hf_generate, sarathi  # noqa: F401  (registration)
from gpu_simulate_test.real_bench.backends.base import BACKENDS, Backend, get_backend, register_backend

__all__ = ["BACKENDS", "Backend", "get_backend", "register_backend"]
