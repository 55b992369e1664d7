"""Engine drivers, one module each, selected by ``backend.name`` through :data:`BACKENDS` (the ``backend`` config
group's drivers). real-bench and vidur-profile both run them; this package imports neither."""

from gpu_simulate_test.backends import hf_continuous, hf_generate, native, openai, sarathi  # noqa: F401  (registration)
from gpu_simulate_test.backends.base import BACKENDS, Backend, get_backend, register_backend

__all__ = ["BACKENDS", "Backend", "get_backend", "register_backend"]
