"""real-bench: replay one workload on a real engine and write ``<paths.real_runs>/<run_id>/``.

Order matters for the fault rules: every check that can fail fast (ids, output dir, context lengths,
backend availability) runs before the model loads; load and warm-up failures leave no directory; once
the clock runs, an interrupt or crash still writes what finished, marked ``incomplete``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional


from gpu_simulate_test.backends import Backend, get_backend
from gpu_simulate_test.backends.recorder import Recorder, RunClock
from gpu_simulate_test.config.apps import RealBenchAppConfig
from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.device.busy import BusyProbe
from gpu_simulate_test.device.identity import device_key, measured_gpu
from gpu_simulate_test.device.lock import device_lock
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, RunInterrupted
from gpu_simulate_test.io.ids import new_run_id
from gpu_simulate_test.io.meta import accelerator_name, build_meta
from gpu_simulate_test.io.outputs import stage_output
from gpu_simulate_test.io.runs import tables_from_records, write_run_meta, write_run_tables
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.real_bench.progress import RunProgress
from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S, measured_run
from gpu_simulate_test.real_bench.replay import lateness_stats, replay
from gpu_simulate_test.workloads.load import Workload, load_workload

log = logging.getLogger(__name__)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _oom_error(exc: BaseException, backend: BackendConfig) -> EnvironmentUnavailableError:
    return EnvironmentUnavailableError(
        f"backend {backend.name}: device out of memory ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
        "lower backend.num_blocks / max_batch_tokens / max_requests_per_batch, or use a shorter workload"
    )


def _prepare(backend: Backend, workload: Workload) -> tuple[str, float, float, dict[int, list[int]]]:
    """Load and warm up; returns (weights source, load seconds, warm-up seconds, prompts). Any failure here is fatal."""
    try:
        t0 = time.perf_counter()
        weights = backend.load()
        load_s = time.perf_counter() - t0
        prompts = workload.prompt_token_ids()
        t0 = time.perf_counter()
        backend.warmup(workload, prompts)
        return weights, load_s, time.perf_counter() - t0, prompts
    except Exception as exc:
        backend.close()
        if _is_oom(exc):
            raise _oom_error(exc, backend.cfg) from exc
        if isinstance(exc, (InputError, EnvironmentUnavailableError)):
            raise
        raise EnvironmentUnavailableError(f"backend {backend.cfg.name} could not load or warm up: {type(exc).__name__}: {exc}") from exc


def run_real_bench(app: RealBenchAppConfig) -> Path:
    """The real-bench app; returns the run directory."""
    out = stage_output(app.paths.real_runs, app.run_id, lambda: new_run_id("real"), overwrite=app.overwrite)
    workload = load_workload(Path(app.paths.workloads), app.workload_id)
    backend = get_backend(app.backend.name)(app.backend, app.model, app.hardware, app.seed)
    backend.check_workload(workload)
    with device_lock(device_key(app.hardware), app.device_lock_timeout_s, f"real-bench {out.id}"):
        weights, load_s, warmup_s, prompts = _prepare(backend, workload)
        failure: Optional[BaseException] = None
        # the bar is up before the clock starts: putting it up takes ~75 ms the first time (rich's imports, the
        # terminal probe), which made the run's first requests that late
        progress = RunProgress(len(workload.requests), lambda: recorder.num_finished)
        with measured_run(), progress:
            probe = BusyProbe(measured_gpu(app.hardware)).start()
            recorder = Recorder(workload.requests, RunClock())  # the run starts now
            try:
                backend.start(recorder)
                replay(
                    workload.requests,
                    lambda r: backend.submit(r, prompts[r.request_id]),
                    recorder.clock,
                    on_dispatch=lambda r, t: recorder.dispatch(r.request_id, t),
                    on_idle=progress.redraw,
                )
                with progress.draining():
                    backend.wait_all()
            except BaseException as exc:  # noqa: BLE001 - Ctrl-C and crashes keep what was measured
                failure = exc
                backend.stop()
            finally:
                run_s = recorder.clock.now() / 1e9
                host_load = probe.stop()
                stats = backend.run_stats()
                settings = backend.settings()
                extra_tables = backend.run_tables()
                backend.close()

    status = "complete" if failure is None else "incomplete"
    requests, tokens = tables_from_records(recorder.records())
    meta = build_meta(
        kind="real_run",
        id=out.id,
        config=asdict(app),
        inputs={"workload_id": workload.workload_id},
        status=status,
        backend=settings,
        model=app.model.name,
        hardware=app.hardware.name,
        gpu=accelerator_name(),
        weights_source=weights,
        load_s=load_s,
        warmup_s=warmup_s,
        run_s=run_s,
        clock_start_perf_counter_ns=recorder.clock.start_ns,
        num_requests=len(workload.requests),
        num_dispatched=recorder.num_dispatched,
        num_finished=recorder.num_finished,
        num_failed=recorder.num_failed,
        failed_by_status=recorder.failed_by_status(),
        dispatch_lateness=lateness_stats(recorder.dispatch_lateness_ns()),
        gil_switch_interval_s=SWITCH_INTERVAL_S,
        engine_stats=stats,
        host_load=host_load.to_dict(),
        failure=None if failure is None else f"{type(failure).__name__}: {failure}",
    )
    with out.write() as tmp:
        write_run_tables(tmp, requests, tokens, recorder.iterations_frame() if recorder.num_steps else None)
        for schema, frame in extra_tables:
            write_table(frame, tmp / schema.filename, schema)
        write_run_meta(tmp, meta)
    if host_load.busy:
        log.warning("real-bench: the host was busy during the run (%s); run_meta.json host_load records it",
                    "; ".join(host_load.reasons))
    if failure is None:
        return out.path
    kept = f"{recorder.num_finished} of {len(workload.requests)} requests finished and were kept in {out.path} (status incomplete)"
    if isinstance(failure, KeyboardInterrupt):
        raise RunInterrupted(f"interrupted; {kept}") from failure
    if _is_oom(failure):
        raise _oom_error(failure, app.backend) from failure
    raise RunInterrupted(f"backend {app.backend.name} failed mid-run ({type(failure).__name__}: {failure}); {kept}") from failure
