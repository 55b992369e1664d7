"""A fake of sarathi-serve's engine API (microsoft/sarathi-serve 96f9911), for testing real-bench's driver.

``write_fake_sarathi(root)`` writes a package ``sarathi`` under ``root`` with exactly the subset the driver
calls, under the real module paths, class, method, argument and attribute names: ``sarathi.config``
(``SystemConfig`` and its parts; ``ModelConfig`` reads the HF config from the model path as the real one
does), ``sarathi.LLMEngine.from_system_config``, ``add_request``, ``step`` -> ``RequestOutput``s,
``has_unfinished_requests``, ``engine.scheduler.schedule`` -> ``SchedulerOutputs``, ``engine.config``,
``sarathi.engine.ray_utils.ray``, ``sarathi.model_executor.model_loader._MODEL_REGISTRY``. The engine is
trivial and deterministic: sarathi's policy (running decodes first, then prefill chunks of running, then
waiting requests, within ``chunk_size`` and ``max_num_seqs``), unlimited blocks, 0.5 ms per step, one token
per decoding request. ``sarathi.core.scheduler.sarathi_scheduler.PREEMPT`` ({seq_id: n}) preempts a request
once, at the first step where it has started its prompt and produced n tokens (restart folds the tokens
into the prompt, as the real ``Sequence.reset_for_recompute`` does).
"""

from __future__ import annotations

from pathlib import Path

FILES: dict[str, str] = {
    "sarathi/__init__.py": '''
from sarathi.core.datatypes.request_output import RequestOutput
from sarathi.core.datatypes.sampling_params import SamplingParams
from sarathi.engine.llm_engine import LLMEngine

__version__ = "0.1.8-fake"
''',
    "sarathi/types.py": '''
from enum import Enum


class AttentionBackend(Enum):
    FLASHINFER = "FLASHINFER"
    NO_OP = "NO_OP"
''',
    "sarathi/config/__init__.py": "from .config import *\n",
    "sarathi/config/config.py": '''
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import AutoConfig

from sarathi.types import AttentionBackend

_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class ModelConfig:
    model: str = "meta-llama/Meta-Llama-3-8B-Instruct"
    trust_remote_code: bool = True
    download_dir: Optional[str] = None
    load_format: str = "auto"
    dtype: str = "float16"
    seed: int = 0
    revision: Optional[str] = None
    max_model_len: Optional[int] = None

    def __post_init__(self):
        self.hf_config = AutoConfig.from_pretrained(self.model, trust_remote_code=self.trust_remote_code, revision=self.revision)
        self.dtype = _DTYPES[self.dtype]
        if self.max_model_len is None:
            self.max_model_len = self.hf_config.max_position_embeddings
        assert self.load_format in ("auto", "pt", "safetensors", "npcache", "dummy")


@dataclass
class CacheConfig:
    block_size: int = 16
    num_gpu_blocks: Optional[int] = None


@dataclass
class ParallelConfig:
    pipeline_parallel_size: int = 2
    tensor_parallel_size: int = 1

    def __post_init__(self):
        self.world_size = self.pipeline_parallel_size * self.tensor_parallel_size


@dataclass
class BaseSchedulerConfig:
    max_num_seqs: int = 128


@dataclass
class SarathiSchedulerConfig(BaseSchedulerConfig):
    chunk_size: int = 512
    enable_dynamic_chunking_schedule: bool = False


@dataclass
class MetricsConfig:
    write_metrics: bool = True
    enable_chrome_trace: bool = True


@dataclass
class ReplicaConfig:
    replica_id: int = 0
    output_dir: str = "."
    resource_mapping: Optional[list] = None

    def __post_init__(self):
        self.output_dir = f"{self.output_dir}/replica_{self.replica_id}"


@dataclass
class WorkerConfig:
    gpu_memory_utilization: float = 0.8
    attention_backend: AttentionBackend = AttentionBackend.FLASHINFER


@dataclass
class SystemConfig:
    replica_config: ReplicaConfig = field(default_factory=ReplicaConfig)
    model_config: ModelConfig = field(default_factory=ModelConfig)
    worker_config: WorkerConfig = field(default_factory=WorkerConfig)
    cache_config: CacheConfig = field(default_factory=CacheConfig)
    parallel_config: ParallelConfig = field(default_factory=ParallelConfig)
    scheduler_config: BaseSchedulerConfig = field(default_factory=SarathiSchedulerConfig)
    metrics_config: MetricsConfig = field(default_factory=MetricsConfig)
''',
    "sarathi/core/__init__.py": "",
    "sarathi/core/datatypes/__init__.py": "",
    "sarathi/core/datatypes/sampling_params.py": '''
class SamplingParams:
    def __init__(self, temperature=1.0, top_p=1.0, top_k=-1, stop=None, ignore_eos=False, max_tokens=2048):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
        if temperature < 1e-5 and (top_p < 1.0 or top_k != -1):
            raise ValueError("greedy sampling needs top_p=1 and top_k=-1")
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.stop = [] if stop is None else list(stop)
        self.ignore_eos, self.max_tokens = ignore_eos, max_tokens
''',
    "sarathi/core/datatypes/request_output.py": '''
from dataclasses import dataclass
from typing import List, Optional


@dataclass
class RequestOutput:
    seq_id: str
    prompt: str
    prompt_token_ids: List[int]
    text: str
    token_ids: List[int]
    finished: bool
    finish_reason: Optional[str] = None
''',
    "sarathi/core/datatypes/sequence.py": '''
class SequenceScheduleMetadata:
    def __init__(self, seq_id: str, prompt_chunk_len: int) -> None:
        self.seq_id = seq_id
        self.prompt_chunk_len = prompt_chunk_len

    @property
    def num_prompt_tokens(self) -> int:
        return self.prompt_chunk_len

    @property
    def is_prompt(self) -> bool:
        return self.prompt_chunk_len > 0

    @property
    def num_output_tokens(self) -> int:
        return 0 if self.prompt_chunk_len > 0 else 1

    @property
    def num_tokens(self) -> int:
        return max(self.prompt_chunk_len, 1)
''',
    "sarathi/core/datatypes/scheduler_output.py": '''
class SchedulerOutputs:
    def __init__(self, id, ignored_seq_ids, preempted_seq_ids, scheduled_seq_metadata_list) -> None:
        self.id = id
        self.ignored_seq_ids = ignored_seq_ids
        self.preempted_seq_ids = preempted_seq_ids
        self.scheduled_seq_metadata_list = sorted(scheduled_seq_metadata_list, key=lambda x: not x.is_prompt)

    def is_empty(self) -> bool:
        return not self.scheduled_seq_metadata_list
''',
    "sarathi/core/scheduler/__init__.py": "",
    "sarathi/core/scheduler/sarathi_scheduler.py": '''
from sarathi.core.datatypes.scheduler_output import SchedulerOutputs
from sarathi.core.datatypes.sequence import SequenceScheduleMetadata

PREEMPT = {}  # seq_id -> preempt once when it has started its prompt and produced this many tokens


class Seq:
    def __init__(self, seq_id, prompt_token_ids, sampling_params, eos_token_id):
        self.seq_id, self.prompt_token_ids, self.sampling_params = seq_id, list(prompt_token_ids), sampling_params
        self.eos_token_id = eos_token_id
        self.output_token_ids = []
        self.prompt_tokens_processed = 0
        self.finished = False
        self.preempted = False

    @property
    def prompt_done(self):
        return self.prompt_tokens_processed == len(self.prompt_token_ids)


class SarathiScheduler:
    def __init__(self, scheduler_config):
        self.chunk_size = scheduler_config.chunk_size
        self.max_num_seqs = scheduler_config.max_num_seqs
        self.waiting, self.running = [], []
        self._iteration_id = -1

    def add_seq(self, seq):
        self.waiting.append(seq)

    def has_unfinished_seqs(self):
        return bool(self.waiting or self.running)

    def _preempt_due(self, seq):
        due = PREEMPT.get(seq.seq_id)
        return due is not None and not seq.preempted and seq.prompt_tokens_processed > 0 and len(seq.output_token_ids) == due

    def schedule(self):
        self._iteration_id += 1
        batch, preempted, budget = [], [], self.chunk_size
        for seq in [s for s in self.running if self._preempt_due(s)]:
            self.running.remove(seq)
            seq.preempted = True
            seq.prompt_token_ids = seq.prompt_token_ids + seq.output_token_ids
            seq.output_token_ids, seq.prompt_tokens_processed = [], 0
            self.waiting.insert(0, seq)
            preempted.append(seq.seq_id)
        for seq in self.running:
            if seq.prompt_done and budget > 0:
                batch.append(SequenceScheduleMetadata(seq.seq_id, 0))
                budget -= 1
        for seq in self.running:
            if not seq.prompt_done and budget > 0:
                n = min(budget, len(seq.prompt_token_ids) - seq.prompt_tokens_processed)
                batch.append(SequenceScheduleMetadata(seq.seq_id, n))
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting.pop(0)
            n = min(budget, len(seq.prompt_token_ids))
            batch.append(SequenceScheduleMetadata(seq.seq_id, n))
            budget -= n
            self.running.append(seq)
        return SchedulerOutputs(self._iteration_id, [], preempted, batch)

    def on_step_completed(self):
        self.running = [s for s in self.running if not s.finished]
''',
    "sarathi/engine/__init__.py": "",
    "sarathi/engine/ray_utils.py": '''
class _Ray:
    shutdowns = 0

    def shutdown(self):
        _Ray.shutdowns += 1


ray = _Ray()
''',
    "sarathi/engine/llm_engine.py": '''
from sarathi.config import SystemConfig
from sarathi.engine.base_llm_engine import BaseLLMEngine


class LLMEngine:
    @classmethod
    def from_system_config(cls, config: SystemConfig) -> "LLMEngine":
        assert config.parallel_config.pipeline_parallel_size == 1, "the fake has no pipeline-parallel engine"
        return BaseLLMEngine(config)
''',
    "sarathi/engine/base_llm_engine.py": '''
import time

from transformers import AutoTokenizer

from sarathi.core.datatypes.request_output import RequestOutput
from sarathi.core.scheduler.sarathi_scheduler import SarathiScheduler, Seq

STEP_S = 0.0005
PROFILED_BLOCKS = 1000


class BaseLLMEngine:
    def __init__(self, config) -> None:
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.model_config.model, trust_remote_code=True)
        self.config.cache_config.num_gpu_blocks = PROFILED_BLOCKS
        self.scheduler = SarathiScheduler(config.scheduler_config)
        self.seqs = {}
        self.vocab = config.model_config.hf_config.vocab_size

    def add_request(self, prompt, sampling_params, prompt_token_ids=None, arrival_time=None, seq_id=None):
        assert prompt_token_ids is not None and seq_id and seq_id not in self.seqs
        seq = Seq(seq_id, prompt_token_ids, sampling_params, self.tokenizer.eos_token_id)
        self.seqs[seq_id] = seq
        self.scheduler.add_seq(seq)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished_seqs()

    def get_num_unfinished_requests(self) -> int:
        return len(self.scheduler.waiting) + len(self.scheduler.running)

    def step(self):
        scheduler_outputs = self.scheduler.schedule()
        if scheduler_outputs.is_empty():
            return []
        time.sleep(STEP_S)
        outputs = []
        for md in scheduler_outputs.scheduled_seq_metadata_list:
            seq = self.seqs[md.seq_id]
            seq.prompt_tokens_processed += md.prompt_chunk_len
            if seq.prompt_done:
                last = (seq.prompt_token_ids + seq.output_token_ids)[-1]
                token = (last * 31 + 7) % self.vocab
                seq.output_token_ids.append(token)
                stop = not seq.sampling_params.ignore_eos and token == seq.eos_token_id
                seq.finished = stop or len(seq.output_token_ids) == seq.sampling_params.max_tokens
            outputs.append(
                RequestOutput(seq.seq_id, None, seq.prompt_token_ids, "", list(seq.output_token_ids), seq.finished,
                              "length" if seq.finished else None)
            )
            if seq.finished:
                del self.seqs[seq.seq_id]
        self.scheduler.on_step_completed()
        return outputs
''',
    "sarathi/model_executor/__init__.py": "",
    # The real registry's keys at 96f9911 (sarathi/model_executor/model_loader.py): no Qwen2 or Qwen3.
    "sarathi/model_executor/model_loader.py": '''
_MODEL_REGISTRY = {
    "FalconForCausalLM": object,
    "LlamaForCausalLM": object,
    "LLaMAForCausalLM": object,
    "InternLMForCausalLM": object,
    "MistralForCausalLM": object,
    "MixtralForCausalLM": object,
    "QWenLMHeadModel": object,
    "YiForCausalLM": object,
}
''',
}


def write_fake_sarathi(root: Path) -> Path:
    """Write the fake package under ``root`` (put ``root`` on ``sys.path``); returns ``root``."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"))
    return root
