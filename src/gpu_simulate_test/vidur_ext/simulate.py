"""vidur-sim: replay a workload in ``vidur==0.0.26`` (unpatched) and write a run directory like real-bench's.

Everything is checked before anything is written (workload, profiling root, model, grid, KV capacity),
so a bad input leaves no run directory. Vidur's own files (its trace input and ``simulator_output/``)
go under the run's ``vidur/`` folder and its trained predictors under ``paths.cache``; nothing goes to the cwd.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from vidur.config import (
    BaseReplicaSchedulerConfig,
    CacheConfig,
    ClusterConfig,
    MetricsConfig,
    ReplicaConfig,
    RoundRobinGlobalSchedulerConfig,
    SimulationConfig,
    TraceRequestGeneratorConfig,
)
from vidur.request_generator import RequestGeneratorRegistry
from vidur.types import RequestGeneratorType
from vidur.utils.random import set_seeds

from gpu_simulate_test.backends import get_backend
from gpu_simulate_test.config.apps import VidurSimAppConfig
from gpu_simulate_test.config.limits import Limits, resolve_limits, workload_kv_blocks
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import new_run_id
from gpu_simulate_test.io.meta import build_meta
from gpu_simulate_test.io.outputs import stage_output
from gpu_simulate_test.io.runs import (
    RequestRecord,
    recorded_backend,
    resolve_dir,
    tables_from_records,
    write_run_meta,
    write_run_tables,
)
from gpu_simulate_test.io.schemas import ITERATION_METRICS
from gpu_simulate_test.io.units import NS_PER_S
from gpu_simulate_test.vidur_ext.predictor import (
    PredictorGrid,
    check_profile_rows,
    grid_for_needs,
    grid_tokens_needed,
    predictor_config,
    predictor_settings,
    register_predictors,
)
from gpu_simulate_test.vidur_ext.profiling_root import ProfilingRoot, load_profiling_root, resolve_root
from gpu_simulate_test.vidur_ext.registration import build_replica_config, replace_registration, vidur_model_name
from gpu_simulate_test.vidur_ext.schedulers import cache_config, describe, scheduler_config
from gpu_simulate_test.vidur_ext.step_correction import step_terms
from gpu_simulate_test.vidur_ext.tracing import REQUEST_ID_COLUMN, TracingSimulator, TracingTraceReplayGenerator
from gpu_simulate_test.vidur_ext.verdict import BundleVerdict, bundle_verdict, require_accepted
from gpu_simulate_test.workloads.load import Workload, load_workload

TRACE_DATE = "1970-01-01"  # Vidur's trace reader keeps only rows whose Date equals its configured date
VIDUR_DIR = "vidur"
TRACE_FILE = "trace.csv"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimInputs:
    """Everything a simulation needs, validated."""

    workload: Workload
    root: ProfilingRoot
    verdict: BundleVerdict
    scheduler: BaseReplicaSchedulerConfig
    replica: ReplicaConfig
    cache: CacheConfig
    grid: PredictorGrid
    kv_from_run: Optional[int] = None  # the KV pool (blocks) taken from the real run ``real_run``; None: not from one


@dataclass
class SimResult:
    requests: pd.DataFrame
    tokens: pd.DataFrame
    iterations: pd.DataFrame
    settings: dict[str, Any]


def vidur_version() -> str:
    return metadata.version("vidur")


def prepare(app: VidurSimAppConfig) -> SimInputs:
    """Load and check every input; raise :class:`InputError`/:class:`ArtifactError` before anything is written."""
    workload = load_workload(Path(app.paths.workloads), app.workload_id)
    root = load_profiling_root(resolve_root(app.profiling_root, Path(app.paths.profiling)))
    root.require_match(model=app.model.name, hardware=app.hardware.name, backend=app.backend.name)
    verdict = bundle_verdict(root.meta)
    require_accepted(verdict, root.path, bool(app.accept_bundle))
    model = app.model
    if workload.max_context > model.max_position_embeddings:
        raise InputError(
            f"workload {workload.workload_id}: its longest request has {workload.max_context} tokens (prompt + decode), "
            f"more than model {model.name}'s context of {model.max_position_embeddings}; drop or shorten it in workload-spec"
        )
    if app.vidur.num_replicas < 1:
        raise InputError(f"vidur.num_replicas={app.vidur.num_replicas}; it must be >= 1")
    configured = resolve_limits(app.backend, workload.max_prefill, len(workload.requests))
    limits = recorded_kv_pool(app, configured)
    kv_from_run = limits.num_blocks if configured.num_blocks is None else None
    scheduler = scheduler_config(app.backend.name, limits)
    root.limits.require_run(f"profiling root {root.path}", limits, workload.max_context)
    replica = build_replica_config(model, app.hardware)  # registers the model and hardware with Vidur
    cache = cache_config(app.backend.name, limits, workload.max_context, replica)
    check_profile_rows(root.mlp_csv, root.attention_csv, model=model, block_size=limits.block_size)
    need = grid_tokens_needed(workload.max_context, limits.tokens_per_iteration)
    grid = grid_for_needs(need, _longest_chunk(limits, cache, workload.max_context), limits.batch_size)
    explicit = app.vidur.prediction_max_tokens_per_request
    if explicit is not None:
        if int(explicit) < need:
            raise InputError(
                f"vidur.prediction_max_tokens_per_request={explicit} is below what this workload needs ({need} tokens "
                f"per request or iteration: requests of up to {workload.max_context} tokens, iterations of up to "
                f"{limits.tokens_per_iteration}, after Vidur's roundings); raise it or leave it null"
            )
        grid = PredictorGrid(int(explicit), grid.prefill_chunk, grid.batch_size)
    return SimInputs(workload, root, verdict, scheduler, replica, cache, grid, kv_from_run)


def _longest_chunk(limits: Limits, cache: CacheConfig, longest_context: int) -> int:
    """The longest prefill chunk Vidur's predictor may be asked for: the policy's chunk of a prompt or, when the pool
    can run short, a restarted request's re-prefill of everything it knew (up to the token budget), which Vidur's
    precomputed table must hold too (beyond the bundle's rows it extrapolates)."""
    if cache.num_blocks >= workload_kv_blocks(limits, longest_context):  # every request fits at once: no restart
        return limits.prefill_chunk
    return max(limits.prefill_chunk, min(limits.token_budget, longest_context))


def recorded_kv_pool(app: VidurSimAppConfig, limits: Limits) -> Limits:
    """``backend.num_blocks: null``: the KV pool the real run ``app.real_run`` recorded (``run_meta.json``
    ``backend.num_blocks``), so that both sides have the same memory. A backend whose engine sizes its pool when it
    loads (``kv_pool_from_run``: native) cannot be simulated without that count; the others fall back to Vidur's
    MemoryPlanner (``schedulers.cache_config``)."""
    if limits.num_blocks is not None:
        return limits
    name = app.backend.name
    if app.real_run is not None:
        run_dir = resolve_dir(Path(app.paths.real_runs), app.real_run, "real_run")
        settings = recorded_backend(run_dir)
        if settings.get("name") != name:
            raise InputError(f"real_run {run_dir.name} ran backend {settings.get('name')!r}, not {name!r}: "
                             "give a run of the backend simulated")
        if settings.get("num_blocks") is not None:
            return replace(limits, num_blocks=int(settings["num_blocks"]))
    if get_backend(name).kv_pool_from_run:
        raise InputError(
            f"backend {name}: num_blocks is null, so the real engine sized its KV pool when it loaded; give the real "
            "run it recorded as real_run=<id> (experiment does), or its run_meta.json backend.num_blocks as "
            "backend.num_blocks=<n>"
        )
    return limits


def write_trace(workload: Workload, path: Path) -> None:
    """Vidur's trace format with exact lengths and arrivals in seconds (17 significant digits: exact round trip)."""
    df = pd.DataFrame(
        {
            "Date": TRACE_DATE,
            "Time": [r.arrival_time_ns / NS_PER_S for r in workload.requests],
            "PromptTokenCount": [r.num_prefill_tokens for r in workload.requests],
            "CompletionTokenCount": [r.num_decode_tokens for r in workload.requests],
            REQUEST_ID_COLUMN: [r.request_id for r in workload.requests],
        }
    )
    df.to_csv(path, index=False, float_format="%.17g")


def _to_ns(seconds: Any) -> np.ndarray:
    return np.rint(np.asarray(seconds, dtype=np.float64) * NS_PER_S).astype(np.int64)


def simulation_config(app: VidurSimAppConfig, inputs: SimInputs, scratch: Path) -> SimulationConfig:
    """Vidur's own ``SimulationConfig`` for the run (its trace written into ``scratch``): what stock Vidur would be
    given, so that ``benchmarks/bench_vidur_hooks.py`` runs both on the very same config."""
    vidur_cfg = app.vidur
    logging.getLogger("vidur").setLevel(str(vidur_cfg.log_level).upper())
    scratch.mkdir(parents=True, exist_ok=True)
    trace = scratch / TRACE_FILE
    write_trace(inputs.workload, trace)
    register_predictors()
    return SimulationConfig(
        seed=int(app.seed),
        log_level=str(vidur_cfg.log_level),
        time_limit=0,
        cluster_config=ClusterConfig(
            num_replicas=int(vidur_cfg.num_replicas),
            replica_config=inputs.replica,
            cache_config=inputs.cache,
            global_scheduler_config=RoundRobinGlobalSchedulerConfig(),
            replica_scheduler_config=inputs.scheduler,
        ),
        request_generator_config=TraceRequestGeneratorConfig(
            seed=int(app.seed),
            trace_file=str(trace),
            date=TRACE_DATE,
            prefill_scale_factor=1.0,
            decode_scale_factor=1.0,
            time_scale_factor=1.0,
            max_tokens=inputs.workload.max_context,  # nothing is clipped
        ),
        execution_time_predictor_config=predictor_config(
            inputs.root.mlp_csv, inputs.root.attention_csv, model=app.model, grid=inputs.grid,
            cache_root=Path(app.paths.cache), vidur=vidur_cfg, seed=int(app.seed),
            step_terms=step_terms(inputs.root.meta, str(inputs.root.path)),
        ),
        metrics_config=MetricsConfig(
            write_metrics=False,
            write_json_trace=False,
            enable_chrome_trace=False,
            store_plots=False,
            store_operation_metrics=False,
            store_token_completion_metrics=False,
            wandb_project=None,
            output_dir=str(scratch / "simulator_output"),
        ),
    )


def simulate(app: VidurSimAppConfig, inputs: SimInputs, scratch: Path) -> SimResult:
    """Run Vidur on the workload; ``scratch`` receives Vidur's own files."""
    vidur_cfg = app.vidur
    workload = inputs.workload
    sim_config = simulation_config(app, inputs, scratch)
    replace_registration(RequestGeneratorRegistry, RequestGeneratorType.TRACE_REPLAY, TracingTraceReplayGenerator)
    set_seeds(int(app.seed))
    with Progress(
        TextColumn("vidur-sim"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("requests", total=len(workload.requests))
        simulator = TracingSimulator(sim_config, on_completed=lambda n: progress.advance(task, n))
        simulator.run()
    records = _records(simulator, workload)
    requests, tokens = tables_from_records(records)
    settings = {
        "scheduler": describe(inputs.scheduler),
        "cache": {"block_size": inputs.cache.block_size, "num_blocks": inputs.cache.num_blocks,
                  "watermark_blocks_fraction": inputs.cache.watermark_blocks_fraction},
        "model_name": vidur_model_name(app.model),
        "device": str(app.hardware.vidur_device),
        "network_device": str(app.hardware.vidur_node),
        "tensor_parallel_size": 1,
        "num_pipeline_stages": 1,
        "num_replicas": int(vidur_cfg.num_replicas),
        "execution_time_predictor": str(vidur_cfg.execution_time_predictor),
        "predictor": predictor_settings(vidur_cfg, int(app.seed)),
        # the bundle's step terms, added to every step (null: its rows alone), and its rows' keys (step_correction.py)
        **step_terms(inputs.root.meta, str(inputs.root.path)).record(),
        "predictor_grid": {"prediction_max_tokens_per_request": inputs.grid.tokens,
                           "prediction_max_prefill_chunk_size": inputs.grid.prefill_chunk,
                           "prediction_max_batch_size": inputs.grid.batch_size},
        "predictor_cache_dir": str(sim_config.execution_time_predictor_config.cache_dir),
        "trace": {"time_scale_factor": 1.0, "prefill_scale_factor": 1.0, "decode_scale_factor": 1.0,
                  "max_tokens": workload.max_context},
        "num_iterations": simulator.recorder.num_batches,
        "num_restarts": int(sum(r.num_restarts for r in simulator.requests)),
    }
    return SimResult(requests, tokens, _iterations(simulator), settings)


def _records(simulator: TracingSimulator, workload: Workload) -> list[RequestRecord]:
    """One record per request; checked against Vidur's own per-request times (prefill end, completion)."""
    by_id = {r.request_id: r for r in workload.requests}
    records = []
    for req in simulator.requests:
        w = by_id[req.workload_id]
        times = req.token_times_s
        if not req.completed or len(times) != w.num_decode_tokens or times[0] != req.prefill_completed_at or times[-1] != req.completed_at:
            raise RuntimeError(
                f"vidur-sim: request {w.request_id}: recorded {len(times)} token times for {w.num_decode_tokens} tokens "
                "that disagree with Vidur's own request times; this is a bug in vidur_ext/tracing.py"
            )
        records.append(RequestRecord(
            request_id=w.request_id, arrival_time_ns=w.arrival_time_ns, dispatch_time_ns=w.arrival_time_ns,
            num_prefill_tokens=w.num_prefill_tokens, num_decode_tokens=w.num_decode_tokens,
            token_times_ns=_to_ns(times).tolist(),
        ))
    return records


def _iterations(simulator: TracingSimulator) -> pd.DataFrame:
    rec = simulator.recorder
    df = pd.DataFrame({
        "start_time_ns": _to_ns(rec.start_s),
        "end_time_ns": _to_ns(rec.end_s),
        "batch_size": np.asarray(rec.batch_size, dtype=np.int64),
        "num_prefill_tokens": np.asarray(rec.num_prefill_tokens, dtype=np.int64),
        "num_decode_tokens": rec.num_decode_tokens(),
        "requests": rec.members(),
    })
    # Batch-end order; with several replicas batches overlap, so order by start (ties: end) as real runs do.
    df = df.sort_values(["start_time_ns", "end_time_ns"], kind="stable").reset_index(drop=True)
    df.insert(0, "iteration_id", np.arange(len(df), dtype=np.int64))
    return df[[c for c in ITERATION_METRICS.column_names if c not in ITERATION_METRICS.optional]]


def run_vidur_sim(app: VidurSimAppConfig) -> Path:
    """The vidur-sim app: validate, simulate, write ``<paths.vidur_runs>/<run_id>/`` atomically."""
    out = stage_output(app.paths.vidur_runs, app.run_id, lambda: new_run_id("vidur"), overwrite=bool(app.overwrite))
    inputs = prepare(app)
    with out.write() as tmp:
        result = simulate(app, inputs, tmp / VIDUR_DIR)
        write_run_tables(tmp, result.requests, result.tokens, result.iterations)
        meta = build_meta(
            kind="vidur_run",
            id=out.id,
            config=asdict(app),
            inputs={"workload_id": inputs.workload.workload_id, "bundle_id": inputs.root.bundle_id,
                    "bundle_content": inputs.root.content,
                    **({"real_run": Path(app.real_run).name} if app.real_run else {}),
                    # what the result took from the real run: experiment redoes the simulation when it changes
                    **({"real_run_num_blocks": inputs.kv_from_run} if inputs.kv_from_run is not None else {})},
            bundle_verdict=inputs.verdict.to_dict(),
            vidur_version=vidur_version(),
            scheduler=result.settings["scheduler"],
            settings=result.settings,
        )
        write_run_meta(tmp, meta)
    if not inputs.verdict.accepted:
        log.warning("vidur-sim: simulated with bundle %s (accept_bundle=true), verdict %s", inputs.root.bundle_id,
                    inputs.verdict.line())
    log.info("vidur-sim: %d requests, %d iterations -> %s", len(result.requests), len(result.iterations), out.path)
    return out.path
