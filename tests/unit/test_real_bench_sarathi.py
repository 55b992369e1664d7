"""real-bench's sarathi-serve driver, against a fake of sarathi-serve's engine API (``_fake_sarathi.py``).

The fake's model registry is the real one's, which has no Qwen3: the runs use qwen3-tiny's sizes with the Llama
architecture (``LLAMA``), and a Qwen3 model is refused before the engine starts.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from _fake_sarathi import write_fake_sarathi
from gpu_simulate_test.backends import register_backend
from gpu_simulate_test.backends import sarathi as sarathi_backend
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, RunInterrupted
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import parse_requests_field
from gpu_simulate_test.real_bench.run import run_real_bench
from gpu_simulate_test.testing import make_workload

# (arrival ns, prompt tokens, decode tokens): overlapping arrivals, a one-token output, prompts over one chunk.
REQUESTS = [(0, 40, 5), (1_000_000, 30, 1), (2_000_000, 70, 6), (20_000_000, 20, 3)]
CHUNK, CAP = 64, 3
LLAMA = ["model.architecture=llama", "model.name=llama-tiny"]
SETTINGS = ["backend=sarathi", "hardware=h100", f"backend.max_batch_tokens={CHUNK}", f"backend.max_requests_per_batch={CAP}"]


def _purge_sarathi() -> None:
    for name in [m for m in sys.modules if m == "sarathi" or m.startswith("sarathi.")]:
        del sys.modules[name]


@pytest.fixture
def fake_sarathi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake package on ``sys.path``; the GPU check passes (the fake needs none). Cleaned up after."""
    root = write_fake_sarathi(tmp_path / "fake")
    _purge_sarathi()
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    monkeypatch.setattr(sarathi_backend, "resolve_device", lambda hardware: None)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the driver writes its model dir
    yield root
    _purge_sarathi()


def _run(compose_app: Callable[..., Any], tmp_path: Path, overrides: list[str]) -> Path:
    if not (tmp_path / "workloads" / "w1").exists():
        make_workload(tmp_path / "workloads", "w1", REQUESTS)
    return run_real_bench(compose_app("real_bench", ["workload_id=w1", "backend.warmup_requests=1", *LLAMA, *SETTINGS, *overrides]))


def test_fake_engine_run_is_exact_and_consistent(
    compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    real_model_dir = sarathi_backend.model_dir

    def recording_model_dir(*args: Any) -> Any:
        mdir = real_model_dir(*args)
        written.append(mdir.path)
        return mdir

    monkeypatch.setattr(sarathi_backend, "model_dir", recording_model_dir)
    run = load_run(_run(compose_app, tmp_path, []), "real_run")  # validates every file and their agreement
    req = run.requests.set_index("request_id")
    assert run.complete and len(req) == len(REQUESTS)
    for rid, (arrival, _, decode) in enumerate(REQUESTS):
        assert req.loc[rid, "num_decode_tokens_actual"] == decode
        assert req.loc[rid, "arrival_time_ns"] == arrival
    assert (req["dispatch_time_ns"] >= req["arrival_time_ns"]).all()
    assert (req["first_token_time_ns"] > req["dispatch_time_ns"]).all()
    tok = run.tokens
    assert tok.groupby("request_id")["token_time_ns"].apply(lambda s: s.is_monotonic_increasing and s.is_unique).all()
    its = run.iterations
    assert its is not None and len(its) > 0
    assert its["iteration_id"].tolist() == list(range(len(its)))
    assert (its["start_time_ns"] < its["end_time_ns"]).all() and (its["end_time_ns"].diff().dropna() > 0).all()
    assert (its["batch_size"] <= CAP).all() and (its["num_prefill_tokens"] + its["num_decode_tokens"] <= CHUNK).all()
    # Every prompt token is processed once, in chunks, and every token after the first costs one decode step.
    seen: dict[int, list[int]] = {rid: [0, 0] for rid in req.index}
    for row in its.itertuples():
        for rid, n in parse_requests_field(row.requests):
            seen[rid][1 if seen[rid][0] >= REQUESTS[rid][1] else 0] += n
    assert seen == {rid: [prefill, decode - 1] for rid, (_, prefill, decode) in enumerate(REQUESTS)}
    # Each token is stamped at the end of the step that produced it.
    ends = set(its["end_time_ns"])
    assert set(tok["token_time_ns"]) <= ends
    backend = run.meta["backend"]
    assert backend["name"] == "sarathi" and backend["max_batch_tokens"] == CHUNK and backend["max_requests_per_batch"] == CAP
    assert backend["num_blocks"] == 1000 and backend["block_size"] == 16 and backend["load_format"] == "dummy"
    assert backend["sarathi_serve_version"] == "0.1.8-fake" and backend["dtype"] == "float32"
    assert run.meta["weights_source"] == "random" and run.meta["engine_stats"] == {"preemptions_before_first_token": 0}
    assert run.meta["dispatch_lateness"]["count"] == len(REQUESTS)
    assert importlib.import_module("sarathi.engine.ray_utils").ray.shutdowns == 1  # close() ended the engine
    assert len(written) == 1 and written[0].is_relative_to(tmp_path / "tmp") and not written[0].exists()
    assert not list((tmp_path / "tmp").glob("gst-sarathi-*"))  # close() removed the scratch dir it made


def test_preemption_before_the_first_token_keeps_lengths(
    compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.import_module("sarathi.core.scheduler.sarathi_scheduler"), "PREEMPT", {"r2": 0})
    run = load_run(_run(compose_app, tmp_path, []), "real_run")
    assert run.complete and run.meta["engine_stats"] == {"preemptions_before_first_token": 1}
    assert run.requests.set_index("request_id")["num_decode_tokens_actual"].tolist() == [d for _, _, d in REQUESTS]


def test_preemption_after_tokens_stops_the_run_clearly(
    compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.import_module("sarathi.core.scheduler.sarathi_scheduler"), "PREEMPT", {"r2": 2})
    with pytest.raises(RunInterrupted, match="preempted request 2 after 2 tokens.*gpu_memory_utilization"):
        _run(compose_app, tmp_path, ["run_id=cut"])
    run = load_run(tmp_path / "real_runs" / "cut")
    assert run.meta["status"] == "incomplete" and 2 not in set(run.requests["request_id"])


def test_settings_sarathi_cannot_honour_fail_before_loading(compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path) -> None:
    with pytest.raises(InputError, match="num_blocks must be null"):
        _run(compose_app, tmp_path, ["backend.num_blocks=64"])
    with pytest.raises(InputError, match="watermark_blocks_fraction=0.05.*always keeps 0.01"):
        _run(compose_app, tmp_path, ["backend.watermark_blocks_fraction=0.05"])
    with pytest.raises(InputError, match="max_requests_per_batch=0; it must be >= 1"):
        _run(compose_app, tmp_path, ["backend.max_requests_per_batch=0"])
    with pytest.raises(InputError, match="CUDA GPUs only"):
        _run(compose_app, tmp_path, ["hardware=cpu"])
    assert not (tmp_path / "real_runs").exists()


def test_null_token_budget_is_the_longest_prompt(compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path) -> None:
    """``max_batch_tokens: null`` means whole prompts, for sarathi-serve too: its chunk size is the longest prompt."""
    run = load_run(_run(compose_app, tmp_path, ["backend.max_batch_tokens=null"]), "real_run")
    longest = max(p for _, p, _ in REQUESTS)
    assert run.complete and run.meta["backend"]["max_batch_tokens"] == longest
    its = run.iterations
    assert its is not None and (its["num_prefill_tokens"] + its["num_decode_tokens"] <= longest).all()
    # the longest prompt's first chunk fills the whole budget: alone in its step (70 prefill tokens), or beside
    # requests still decoding when it arrived, which the timing decides (69 + 1 decode, 68 + 2)
    assert longest in set(its["num_prefill_tokens"] + its["num_decode_tokens"])


def test_model_sarathi_serve_lacks_is_refused(compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path) -> None:
    """The registry of sarathi-serve 96f9911 has no Qwen3: qwen3-tiny is refused before the engine starts."""
    make_workload(tmp_path / "workloads", "w1", REQUESTS)
    cfg = compose_app("real_bench", ["workload_id=w1", *SETTINGS])  # qwen3-tiny, as configured
    with pytest.raises(EnvironmentUnavailableError, match=r"no implementation of \['Qwen3ForCausalLM'\].*LlamaForCausalLM"):
        run_real_bench(cfg)
    assert not (tmp_path / "real_runs").exists()
    assert importlib.import_module("sarathi.engine.ray_utils").ray.shutdowns == 0  # no engine was started


def test_missing_or_unrelated_sarathi_says_how_to_install(
    compose_app: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _purge_sarathi()
    with pytest.raises(EnvironmentUnavailableError, match="PyPI package named 'sarathi' is a different project.*extern/README.md"):
        _run(compose_app, tmp_path, [])
    unrelated = tmp_path / "unrelated"
    (unrelated / "sarathi").mkdir(parents=True)
    (unrelated / "sarathi" / "__init__.py").write_text("")  # what the PyPI package of that name would look like
    monkeypatch.syspath_prepend(str(unrelated))
    importlib.invalidate_caches()
    try:
        assert not sarathi_backend.sarathi_serve_available()
        with pytest.raises(EnvironmentUnavailableError, match="no importable sarathi.engine.llm_engine"):
            _run(compose_app, tmp_path, [])
    finally:
        _purge_sarathi()
    assert not (tmp_path / "real_runs").exists()


@register_backend("test-sarathi-ctrl-c")
class _CtrlCOnLastRequest(sarathi_backend.SarathiBackend):
    """Ctrl-C arrives while the replay waits for the last request; the first ones have finished by then."""

    def submit(self, request: Any, prompt: list[int]) -> int:
        if request.request_id == len(REQUESTS) - 1:
            while self.recorder is not None and self.recorder.num_finished < len(REQUESTS) - 1:
                time.sleep(0.001)
            raise KeyboardInterrupt
        return super().submit(request, prompt)


def test_ctrl_c_stops_the_engine_and_keeps_finished_requests(
    compose_app: Callable[..., Any], tmp_path: Path, fake_sarathi: Path
) -> None:
    with pytest.raises(RunInterrupted, match="interrupted; 3 of 4 requests finished"):
        _run(compose_app, tmp_path, ["backend.name=test-sarathi-ctrl-c", "run_id=cut"])
    run = load_run(tmp_path / "real_runs" / "cut")
    assert run.meta["status"] == "incomplete" and sorted(run.requests["request_id"]) == [0, 1, 2]
    assert importlib.import_module("sarathi.engine.ray_utils").ray.shutdowns == 1
