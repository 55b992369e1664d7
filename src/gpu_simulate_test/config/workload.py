"""The ``workload`` group: which requests arrive when, with how many prompt and output tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class LengthDistConfig:
    """One token-length distribution; which fields matter depends on ``lengths.source``.

    fixed: ``value``; uniform: ``min``..``max``; normal: ``mean``/``std``; lognormal: ``median``/``sigma``;
    zipf: ``theta`` over ``min``..``max``. Every synthetic draw is clipped to ``min``..``max``.
    """

    value: int = 128
    min: int = 1
    max: int = 4096
    mean: float = 256.0
    std: float = 64.0
    median: float = 256.0
    sigma: float = 1.0
    theta: float = 1.2


@dataclass
class LengthsConfig:
    """Where lengths (and prompts) come from: a synthetic distribution or an importer of a real trace."""

    # fixed | uniform | normal | lognormal | zipf | sharegpt | azure | mooncake | burstgpt | vidur_trace | prompts_jsonl
    source: str = "fixed"
    path: Optional[str] = None  # the trace or prompts file of an importer
    # imported traces: clip their lengths into prefill/decode min..max too (prompts truncated or padded)
    clip_imported: bool = False
    # the distribution (fixed | uniform | normal | lognormal | zipf) of decode lengths a trace does not give
    # (prompts_jsonl lines without a count); synthetic sources use ``source`` for both
    decode_dist: str = "fixed"
    prefill: LengthDistConfig = field(default_factory=LengthDistConfig)
    decode: LengthDistConfig = field(default_factory=lambda: LengthDistConfig(value=32, max=1024, mean=64.0, std=16.0, median=64.0))


@dataclass
class PhaseConfig:
    """One phase of a workload: ``qps`` requests/s for ``duration_s`` seconds (round(qps x duration_s) requests)."""

    qps: float = 1.0
    duration_s: float = 60.0


@dataclass
class ArrivalConfig:
    """Arrival process. ``trace`` keeps the imported trace's own timestamps, multiplied by ``time_scale``.

    ``phases`` (e.g. ``[{qps: 5, duration_s: 600}, {qps: 10, duration_s: 600}]``) runs the rate-driven process
    (poisson, gamma, constant) at each phase's rate in turn, in place of ``qps``; the phases then decide how many
    requests there are, and compare-runs reports each phase as well as the whole.
    """

    process: str = "poisson"  # poisson | gamma | constant | all_at_once | trace
    qps: float = 1.0
    cv: float = 1.0  # gamma: coefficient of variation of inter-arrival times (1 = Poisson)
    time_scale: float = 1.0
    phases: List[PhaseConfig] = field(default_factory=list)


@dataclass
class TokenizerConfig:
    """Tokenizer for prompt texts: a Hugging Face tokenizer when one is found, else the offline Qwen BPE."""

    source: str = "auto"  # auto | hf | qwen
    name_or_path: Optional[str] = None


@dataclass
class WorkloadConfig:
    """A whole workload; with the app's ``seed`` it determines the files and the ``workload_id``."""

    name: str = "workload"
    # for synthetic sources: how many; for imported traces: the cap (null = all); with arrival.phases: null (they decide)
    num_requests: Optional[int] = 100
    lengths: LengthsConfig = field(default_factory=LengthsConfig)
    arrival: ArrivalConfig = field(default_factory=ArrivalConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    subsample: bool = False  # imported traces: seeded random subsample of num_requests instead of the first ones
    drop_over_context: bool = False  # drop requests whose prompt + decode exceed max_context (else: error)
    max_context: Optional[int] = None  # null: the model's max_position_embeddings


@dataclass
class ExportConfig:
    """workload-spec ``mode=export``: the file to write and its format (``specs/workload.md``)."""

    format: Optional[str] = None  # vidur | mooncake | vllm
    path: Optional[str] = None
