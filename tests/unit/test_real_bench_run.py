"""real-bench on the CPU with qwen3-tiny: exact lengths, consistent files, faults."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from gpu_simulate_test.backends import register_backend
from gpu_simulate_test.backends.hf_generate import HFGenerateBackend
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, RunInterrupted
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.real_bench.run import run_real_bench
from gpu_simulate_test.testing import make_workload
from gpu_simulate_test.workloads.load import load_workload

# (arrival ns, prompt tokens, decode tokens): overlapping arrivals, a one-token output, a prompt over one chunk.
REQUESTS = [(0, 40, 5), (1_000_000, 30, 1), (2_000_000, 70, 6), (30_000_000, 20, 3)]
CB = ["backend.num_blocks=32", "backend.block_size=32", "backend.max_batch_tokens=64", "backend.max_requests_per_batch=4"]


def _run(compose_app: Callable[..., Any], tmp_path: Path, overrides: list[str]) -> Path:
    if not (tmp_path / "workloads" / "w1").exists():
        make_workload(tmp_path / "workloads", "w1", REQUESTS)
    return run_real_bench(compose_app("real_bench", ["workload_id=w1", "backend.warmup_requests=1", *overrides]))


@pytest.mark.parametrize(
    "overrides",
    [["backend=hf-generate"], ["backend=hf-generate", "backend.cache_implementation=static"], ["backend=hf-continuous", *CB]],
    ids=["hf-generate", "hf-generate-static", "hf-continuous"],  # static: one cache, reset between requests
)
def test_backend_records_exact_consistent_times(compose_app: Callable[..., Any], tmp_path: Path, overrides: list[str]) -> None:
    run = load_run(_run(compose_app, tmp_path, overrides), "real_run")  # validates every file and their agreement
    req = run.requests.set_index("request_id")
    assert run.complete and len(req) == len(REQUESTS)
    for rid, (arrival, prefill, decode) in enumerate(REQUESTS):
        assert req.loc[rid, "num_decode_tokens_actual"] == decode
        assert req.loc[rid, "arrival_time_ns"] == arrival
    assert (req["dispatch_time_ns"] >= req["arrival_time_ns"]).all()
    assert (req["first_token_time_ns"] >= req["dispatch_time_ns"]).all()
    tok = run.tokens
    assert tok.groupby("request_id")["token_time_ns"].apply(lambda s: s.is_monotonic_increasing and s.is_unique).all()
    # Every prompt token is processed once and every token after the first costs one decode step.
    its = run.iterations
    assert its is not None and len(its) > 0
    seen: dict[int, list[int]] = {rid: [0, 0] for rid in req.index}
    for row in its.itertuples():
        for rid, n in parse_requests_field(row.requests):
            first_decode_done = seen[rid][0] >= REQUESTS[rid][1]
            seen[rid][1 if first_decode_done else 0] += n
    for rid, (_, prefill, decode) in enumerate(REQUESTS):
        assert seen[rid] == [prefill, decode - 1]
    assert (its["end_time_ns"] >= its["start_time_ns"]).all()
    # The step that finishes a request ends at or after its last token.
    last_end = {rid: max(r.end_time_ns for r in its.itertuples() if rid in dict(parse_requests_field(r.requests))) for rid in req.index}
    assert all(last_end[rid] >= req.loc[rid, "completion_time_ns"] for rid in req.index)
    meta = run.meta
    assert meta["inputs"]["workload_id"] == "w1" and meta["weights_source"] == "random"
    assert meta["dispatch_lateness"]["count"] == len(REQUESTS) and meta["dispatch_lateness"]["p99_ns"] >= 0
    assert meta["warmup_s"] > 0 and meta["backend"]["name"] == overrides[0].split("=")[1]
    host = meta["host_load"]  # the busy probe ran over the measured run; on the CPU no GPU processes are looked for
    assert host["wall_s"] > 0 and host["busy"] in (True, False) and host["other_gpu_processes"] is None
    # hf-generate's config leaves cuDNN attention out (modeling.select_sdpa_kernels); the meta says what was in effect.
    expect = ["flash", "efficient", "math"] if "hf-generate" in overrides[0] else ["flash", "efficient", "cudnn", "math"]
    assert meta["backend"]["sdpa_kernels"] == expect


def test_sdpa_kernels_are_checked_and_set_process_wide() -> None:
    from gpu_simulate_test.modeling import select_sdpa_kernels

    try:
        assert select_sdpa_kernels(["math", "efficient"]) == ["efficient", "math"]
        assert not torch.backends.cuda.cudnn_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled()
        for bad in (["cudnn", "fast"], []):
            with pytest.raises(InputError, match="backend.sdpa_kernels"):
                select_sdpa_kernels(bad)
    finally:
        assert select_sdpa_kernels(None) == ["flash", "efficient", "cudnn", "math"]  # torch's own default set


def test_prompt_longer_than_context_fails_before_loading(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"request 2: prompt \(70\) \+ decode \(6\) tokens exceed"):
        _run(compose_app, tmp_path, ["model.max_position_embeddings=64"])
    assert not (tmp_path / "real_runs").exists()


def test_unknown_workload_and_backend(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="workload 'nope' not found"):
        run_real_bench(compose_app("real_bench", ["workload_id=nope"]))
    with pytest.raises(InputError, match="not a known backend"):
        _run(compose_app, tmp_path, ["backend.name=nope"])


def test_sarathi_without_sarathi_serve_says_how_to_install(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(EnvironmentUnavailableError, match="extern/README.md"):
        _run(compose_app, tmp_path, ["backend=sarathi"])
    assert not (tmp_path / "real_runs").exists()


@register_backend("test-oom-at-load")
class _OOMAtLoad(HFGenerateBackend):
    def load(self) -> str:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@register_backend("test-ctrl-c")
class _CtrlCOnLastRequest(HFGenerateBackend):
    """Ctrl-C arrives while the replay waits for the last request; the first ones have finished by then."""

    def submit(self, request: Any, prompt: list[int]) -> int:
        if request.request_id == len(REQUESTS) - 1:
            while self.recorder is not None and self.recorder.num_finished < len(REQUESTS) - 1:
                self._thread.join(0.01)
            raise KeyboardInterrupt
        return super().submit(request, prompt)


def test_oom_while_loading_is_one_clear_error(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(EnvironmentUnavailableError, match="out of memory.*lower backend.num_blocks"):
        _run(compose_app, tmp_path, ["backend.name=test-oom-at-load"])
    assert not (tmp_path / "real_runs").exists()


def test_ctrl_c_keeps_finished_requests_marked_incomplete(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(RunInterrupted, match="3 of 4 requests finished"):
        _run(compose_app, tmp_path, ["backend.name=test-ctrl-c", "run_id=cut"])
    run = load_run(tmp_path / "real_runs" / "cut")
    assert run.meta["status"] == "incomplete" and "KeyboardInterrupt" in run.meta["failure"]
    assert sorted(run.requests["request_id"]) == [0, 1, 2]
    assert not [p for p in (tmp_path / "real_runs").iterdir() if p.name.startswith(".")]
    assert json.loads((tmp_path / "real_runs" / "cut" / "run_meta.json").read_text())["num_finished"] == 3


def test_hf_continuous_counts_graph_captures_inside_the_run_only(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """A capture during warm-up is not counted; one after the clock starts is (CPU: called by hand)."""
    from gpu_simulate_test.backends.hf_continuous import HFContinuousBackend
    from gpu_simulate_test.backends.recorder import Recorder, RunClock

    make_workload(tmp_path / "workloads", "w1", REQUESTS)
    cfg = compose_app("real_bench", ["workload_id=w1", "backend=hf-continuous", *CB])
    backend = HFContinuousBackend(cfg.backend, cfg.model, cfg.hardware, 0)
    try:
        backend.check_workload(load_workload(tmp_path / "workloads", "w1"))  # the lifecycle's first step
        backend.load()
        io = backend.manager.batch_processor.inputs_and_outputs
        graph = SimpleNamespace(reset=lambda: None)  # stands in for a torch.cuda.CUDAGraph
        io.set_graph(graph)  # as during warm-up
        backend.start(Recorder([], RunClock()))
        assert backend.run_stats() == {"cuda_graph_captures_during_run": 0}
        io.set_graph(graph)
        assert backend.run_stats() == {"cuda_graph_captures_during_run": 1}
    finally:
        backend.close()

