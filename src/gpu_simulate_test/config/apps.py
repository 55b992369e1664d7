"""Top-level configs of the Hydra apps. Each app's YAML in ``configs/`` composes onto one of these; its entrypoint
turns the composed config into the dataclass once (:func:`gpu_simulate_test.config.typed`), and every stage
receives that object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.compare import CompareConfig
from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.paths import PathsConfig
from gpu_simulate_test.config.profile import ProfileConfig
from gpu_simulate_test.config.vidur import VidurConfig
from gpu_simulate_test.config.workload import ExportConfig, WorkloadConfig


@dataclass
class AppConfig:
    """What every app has: its seed, where artifacts go, and whether an existing output may be replaced."""

    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    overwrite: bool = False


@dataclass
class EngineAppConfig(AppConfig):
    """The apps that run or simulate an engine: which model, on which hardware, served by which backend."""

    model: ModelConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING


@dataclass
class MeasureAppConfig(EngineAppConfig):
    """The apps that measure on the device (real-bench, vidur-profile, experiment): one measurement at a time per
    device (``device/lock.py``), waiting at most ``device_lock_timeout_s`` for the one before."""

    device_lock_timeout_s: float = 21600.0


@dataclass
class WorkloadSpecAppConfig(AppConfig):
    """``mode=generate`` builds ``workload``; ``mode=export`` writes workload ``workload_id`` in another tool's format."""

    workload: WorkloadConfig = MISSING
    model: ModelConfig = MISSING  # its tokenizer and context limit
    mode: str = "generate"  # generate | export
    workload_id: Optional[str] = None  # export: an id under paths.workloads, or a directory
    export: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class RealBenchAppConfig(MeasureAppConfig):
    workload_id: str = MISSING
    run_id: Optional[str] = None  # null: a new id


@dataclass
class VidurProfileAppConfig(MeasureAppConfig):
    """``mode=measure`` times the model on this machine; ``mode=import`` turns a profile in Vidur's own layout
    (``source``: a folder with its ``mlp.csv`` and ``attention.csv``) into a bundle, unverified; ``mode=rederive``
    derives this request's bundle again from another build's measurements (``source``: that bundle), no device."""

    profile: ProfileConfig = field(default_factory=ProfileConfig)
    mode: str = "measure"  # measure | import | rederive
    # measure: a workload the grid must cover: the profile limits left null are sized to it, rounded up to powers of two.
    workload_id: Optional[str] = None
    source: Optional[str] = None  # import: Vidur's data/profiling/compute/<device>/<model>/ (or a copy of it);
    # rederive: a bundle of the same request and engine (its directory, or its id under paths.profiling)
    tensor_parallel_size: int = 1  # import: the rows of this TP size (vidur-sim simulates TP=1 replicas)


@dataclass
class VidurSimAppConfig(EngineAppConfig):
    workload_id: str = MISSING
    profiling_root: str = MISSING  # a directory, or a bundle id under paths.profiling
    vidur: VidurConfig = field(default_factory=VidurConfig)
    run_id: Optional[str] = None  # null: a new id
    # A real run (id under paths.real_runs, or a directory) whose recorded KV pool (run_meta.json backend.num_blocks)
    # the simulation takes when backend.num_blocks is null; backend=native needs one (experiment passes its own).
    real_run: Optional[str] = None
    # Simulate with a bundle whose verdict is not ``pass`` (fail, busy, unverified: specs/profiling_root.md).
    accept_bundle: bool = False


@dataclass
class CompareRunsAppConfig(AppConfig):
    """``mode`` picks the job: ``compare`` (two runs), ``sweep`` (several comparisons) or ``import`` (a benchmark
    tool's results, or per-request results without token times, as a real run)."""

    mode: str = "compare"  # compare | sweep | import
    real_run: Optional[str] = None  # compare: run id under paths.real_runs, or a directory
    sim_run: Optional[str] = None  # compare: run id under paths.vidur_runs, or a directory
    comparisons: List[str] = field(default_factory=list)  # sweep: ids/dirs/globs under paths.comparisons
    # import: vllm (bench serve --save-detailed) | inference_perf | aiperf | requests_csv (request_id, ttft_ms, e2e_ms,
    # output_tokens per request)
    import_format: str = "vllm"
    import_file: Optional[str] = None  # import: the tool's per-request results (specs/comparison.md)
    workload_id: Optional[str] = None  # import: the workload that the tool replayed
    compare: CompareConfig = field(default_factory=CompareConfig)
    allow_incomplete: bool = False
    comparison_id: Optional[str] = None  # compare: null = derived from the two run ids
    sweep_id: Optional[str] = None  # sweep: null = derived from the comparison ids
    run_id: Optional[str] = None  # import: null = derived from the file's content and the workload
