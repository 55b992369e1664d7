"""gpu-simulate-test: replay one deterministic workload on a real engine and in Vidur, and report the gap."""

__version__ = "0.1.0"
