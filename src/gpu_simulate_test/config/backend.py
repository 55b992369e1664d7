"""The ``backend`` group: the real engine and the scheduling policy that Vidur must mirror."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING


@dataclass
class BackendConfig:
    """One real serving engine's settings (a superset: each backend reads the fields it uses).

    ``vidur_scheduler`` and the limits below are what vidur-sim mirrors, so the simulated batch
    policy matches the real one; where they cannot match, ``specs/`` says so.
    """

    name: str = MISSING  # registry key in gpu_simulate_test.backends (BACKENDS)
    vidur_scheduler: str = MISSING  # vllm | sarathi | orca | ...
    max_requests_per_batch: int = 1
    max_batch_tokens: Optional[int] = None  # tokens per iteration (chunk size); null: whole prompts
    num_blocks: Optional[int] = None  # KV-cache blocks; null: derived from memory
    block_size: int = 256
    watermark_blocks_fraction: float = 0.01
    # sarathi, native: the share of device memory the engine sizes its KV pool from when num_blocks is null
    gpu_memory_utilization: float = 0.8
    # native: the sequence buckets of the CUDA graphs captured at start-up (larger batches run eagerly); empty: never
    # a graph
    cuda_graph_batch_sizes: List[int] = field(default_factory=list)
    # native: the token buckets of the graphs of steps with a prefill chunk (larger steps run eagerly); empty: every
    # step with a prefill chunk runs eagerly
    cuda_graph_token_sizes: List[int] = field(default_factory=list)
    cache_implementation: str = "dynamic"  # hf-generate: dynamic | static
    # hf-generate static cache: its length is the workload's longest context rounded up to this, so every
    # request reuses one cache shape (one compiled decode graph) instead of recompiling per request.
    static_cache_bucket: int = 256
    compile: bool = False  # hf-generate: compile the static-cache forward; hf-continuous: default_compile_level=1
    use_cuda_graph: bool = False
    attn_implementation: str = "sdpa"
    # torch SDPA kernels the engine may pick from (flash, efficient, cudnn, math); null: torch's own default set.
    # Set process-wide when the model loads, so a bundle and a real run of the same backend use the same kernels.
    sdpa_kernels: Optional[List[str]] = None
    early_stop: bool = False  # let EOS end a request before num_decode_tokens
    warmup_requests: int = 2
    # openai: a server measured over HTTP (configs/backend/openai.yaml, specs/backends.md)
    base_url: Optional[str] = None  # http(s)://host:port; the /v1/... route is appended
    endpoint: str = "completions"  # completions | chat
    model_name: Optional[str] = None  # the model as the server names it
    api_key_env: Optional[str] = None  # the environment variable holding a bearer token (its value is never written)
    max_connections: int = 1024  # the client's connection pool: at least the requests in flight
    timeout_s: float = 600.0  # to connect, and of silence on a stream, before a request is given up
    send_token_ids: str = "auto"  # auto | true | false: the prompt as token ids (completions) or as text
