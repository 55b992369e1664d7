"""real-bench backend=openai against the scripted server (its own process, on loopback): recorded token times and
counts, multi-token chunks, text-only servers, and every kind of failure recorded per request while the run goes on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.real_bench.run import run_real_bench
from gpu_simulate_test.testing import SyntheticRun, make_workload, write_run
from gpu_simulate_test.testing_server import read_log

Compose = Callable[..., Any]
# Recorded minus sent, per token: the client reads a chunk after the server began writing it (exactly: one clock), and
# soon after it finished. That bound is loose for a shared CI machine; benchmarks/bench_openai_client.py holds the
# client to 1 ms on a quiet one.
LATE_NS = 50_000_000


class Server:
    """One scripted server process; ``url`` to reach it, ``log()`` what it sent."""

    def __init__(self, tmp: Path, script: dict[str, Any]) -> None:
        self.log_path = tmp / "server.jsonl"
        script_path = tmp / "script.json"
        script_path.write_text(json.dumps(script))
        self.proc = subprocess.Popen([sys.executable, "-m", "gpu_simulate_test.testing_server", "--script", str(script_path),
                                      "--log", str(self.log_path)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline().split('=')[1])}"

    def log(self) -> dict[str, dict[str, Any]]:
        return read_log(self.log_path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Server]]:
    started: list[Server] = []

    def start(script: dict[str, Any]) -> Server:
        started.append(Server(tmp_path, script))
        return started[-1]

    yield start
    for s in started:
        s.proc.kill()
        s.proc.wait()


def _workload(root: Path, requests: list[tuple[int, int, int]]) -> str:
    make_workload(root / "workloads", "wl", requests)
    return "wl"


def _run(compose_app: Compose, url: str, *overrides: str) -> Path:
    return run_real_bench(compose_app("real_bench", ["workload_id=wl", "backend=openai", f"backend.base_url={url}",
                                                     "backend.model_name=scripted", "backend.warmup_requests=2", *overrides]))


def _token_errors(run_dir: Path, log: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per token: recorded time minus when the server began and when it finished writing the token's chunk (all on
    the machine's monotonic clock)."""
    run = load_run(run_dir)
    start = run.meta["clock_start_perf_counter_ns"]
    after, before = [], []
    for rid, g in run.tokens.groupby("request_id"):
        chunks = np.array(log[f"r{rid}"]["chunks"], dtype=np.int64)
        recorded = g["token_time_ns"].to_numpy() + start
        after.append(recorded - np.repeat(chunks[:, 0], chunks[:, 1]))
        before.append(recorded - np.repeat(chunks[:, 2], chunks[:, 1]))
    return np.concatenate(before), np.concatenate(after)


def test_token_times_and_counts_match_what_the_server_sent(compose_app: Compose, tmp_path: Path, server: Callable[..., Server]) -> None:
    srv = server({"default": {"first_token_ms": 15, "token_gap_ms": 15},
                  "requests": {"r2": {"chunk_tokens": [1, 3]}, "r5": {"chunk_tokens": 2}, "r6": {"usage": "final"},
                               "r7": {"usage": "none", "token_ids": True}}})
    _workload(tmp_path, [(i * 30_000_000, 4 + i, 7) for i in range(8)])
    out = _run(compose_app, srv.url)
    run, log = load_run(out), srv.log()
    assert run.meta["status"] == "complete" and run.meta["num_finished"] == 8 and run.meta["num_failed"] == 0
    assert run.requests["num_decode_tokens_actual"].tolist() == [7] * 8
    # chunks of several tokens: their tokens share one time (chunks that arrived in one read share it too), and the
    # run meta counts those chunks
    for rid, g in run.tokens.groupby("request_id"):
        sizes = [c[1] for c in log[f"r{rid}"]["chunks"]]
        assert sizes == {2: [1, 3, 1, 2], 5: [2, 2, 2, 1]}.get(rid, [1] * 7)
        chunk_of_token = np.repeat(np.arange(len(sizes)), sizes)
        per_chunk = g.groupby(chunk_of_token)["token_time_ns"].nunique().tolist()
        assert per_chunk == [1] * len(sizes) and g["token_time_ns"].is_monotonic_increasing
    stream = run.meta["engine_stats"]["stream"]
    assert (stream["tokens"], stream["multi_token_chunks"]) == (56, 2 + 3)
    outcomes = run.outcomes.set_index("request_id")
    assert (outcomes["status"] == "ok").all() and outcomes.loc[2, "multi_token_chunks"] == 2
    assert outcomes["server_prompt_tokens"].iloc[:7].tolist() == [4 + i for i in range(7)]  # usage.prompt_tokens
    assert pd.isna(outcomes.loc[7, "server_prompt_tokens"])  # r7's server sends no usage
    # dispatch = the first byte sent; token times = when the server's chunks arrived
    assert (run.requests["dispatch_time_ns"].to_numpy() == outcomes["first_byte_ns"].to_numpy()).all()
    since_began, since_written = _token_errors(out, log)
    assert since_began.min() >= 0 and since_written.max() <= LATE_NS, (since_began.min(), since_written.max())
    # every request went as token ids with the exact-length options
    assert {rec["prompt"] for rec in log.values()} == {"ids"} and all("min_tokens" in rec["keys"] for rec in log.values())
    settings = run.meta["backend"]
    assert (settings["prompt_as"], settings["exact_length"]) == ("token_ids", True)


def test_failures_are_recorded_per_request_and_the_run_goes_on(compose_app: Compose, tmp_path: Path,
                                                               server: Callable[..., Server]) -> None:
    srv = server({"default": {"first_token_ms": 5, "token_gap_ms": 5},
                  "requests": {"r1": {"status": 500}, "r2": {"truncate_after_chunks": 2}, "r3": {"malformed_after_chunks": 1},
                               "r4": {"drop": True}, "r5": {"first_token_ms": 3000}, "r6": {"usage": "none"},
                               "r7": {"num_tokens": 9}}})
    _workload(tmp_path, [(i * 10_000_000, 6, 4) for i in range(9)])
    out = _run(compose_app, srv.url, "backend.timeout_s=1")
    run = load_run(out)
    statuses = run.outcomes.set_index("request_id")["status"].to_dict()
    assert statuses == {0: "ok", 1: "http_error", 2: "truncated", 3: "bad_stream", 4: "truncated", 5: "timeout",
                        6: "uncounted_stream", 7: "too_many_tokens", 8: "ok"}
    messages = run.outcomes.set_index("request_id")["message"].to_dict()
    assert messages[1] == "HTTP 500: scripted error 500"
    assert "not JSON" in messages[3] and "continuous_usage_stats" in messages[6] and "9 tokens for max_tokens=4" in messages[7]
    assert run.meta["status"] == "complete" and run.meta["num_failed"] == 7
    assert run.meta["failed_by_status"] == {"bad_stream": 1, "http_error": 1, "timeout": 1, "too_many_tokens": 1,
                                            "truncated": 2, "uncounted_stream": 1}
    assert run.requests["request_id"].tolist() == [0, 8] and run.requests["num_decode_tokens_actual"].tolist() == [4, 4]


def test_a_server_that_dies_mid_run_refuses_the_rest(compose_app: Compose, tmp_path: Path, server: Callable[..., Server]) -> None:
    srv = server({"default": {"first_token_ms": 5, "token_gap_ms": 5}, "requests": {"r3": {"exit": True}}})
    _workload(tmp_path, [(0, 5, 3), (5_000_000, 5, 3), (10_000_000, 5, 3), (300_000_000, 5, 3), (600_000_000, 5, 3)])
    run = load_run(_run(compose_app, srv.url))
    statuses = run.outcomes["status"].tolist()
    assert statuses[:3] == ["ok"] * 3 and statuses[3] == "truncated" and statuses[4] == "connect_error"
    assert "cannot connect to" in run.outcomes["message"].iloc[4]
    assert run.meta["num_finished"] == 3  # nothing measured before the crash is lost


def test_a_text_only_server_gets_text_and_compare_lists_prompt_mismatches(compose_app: Compose, tmp_path: Path,
                                                                        server: Callable[..., Server]) -> None:
    srv = server({"default": {"first_token_ms": 5, "token_gap_ms": 5, "accept_token_ids": False, "accept_exact_length": False,
                              "chunk_tokens": [2, 1, 1]},
                  "requests": {"r1": {"text_prompt_tokens": 99}, "r3": {"status": 503}}})
    _workload(tmp_path, [(i * 20_000_000, 5, 4) for i in range(4)])
    out = _run(compose_app, srv.url, "model=qwen3-tiny")
    run, log = load_run(out), srv.log()
    assert {log[f"r{i}"]["prompt"] for i in (0, 1, 2)} == {"text"} and "ignore_eos" not in log["r0"]["keys"]
    assert (run.meta["backend"]["prompt_as"], run.meta["backend"]["exact_length"]) == ("text", False)
    # the server's own counts: r1's is scripted to differ from the workload's 5 prompt tokens
    counted = run.outcomes.set_index("request_id")["server_prompt_tokens"]
    assert counted[1] == 99
    sim = SyntheticRun(run.requests["arrival_time_ns"].to_numpy(), np.full(3, 4), np.concatenate(
        [a + np.arange(1, 5) * 1_000_000 for a in run.requests["arrival_time_ns"]]), np.full(3, 5), np.full(3, 4))
    write_run(tmp_path / "vidur_runs", "sim", "vidur_run", "wl", sim, with_iterations=False)
    cmp = compare_runs(compose_app("compare_runs", [f"real_run={out.name}", "sim_run=sim"]))
    summary = (cmp / "summary.md").read_text()
    caveats = read_meta(cmp / "comparison_meta.json", "comparison")["caveats"]
    mismatched = [m for m in caveats["prompt_token_mismatches"] if m["request_id"] == 1]
    assert mismatched == [{"request_id": 1, "workload": 5, "server": 99}]
    assert "r1: 5 vs 99" in summary
    assert "failed in the real run and left out: 1 requests (http_error: 1)" in summary
    assert "streamed chunks carried more than one token" in summary  # 3 two-token chunks in 12 tokens


def test_a_dead_server_fails_before_the_clock_and_writes_nothing(compose_app: Compose, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _workload(tmp_path, [(0, 5, 3)])
    with pytest.raises(EnvironmentUnavailableError, match=r"warm-up request to http://127.0.0.1:\d+/v1/completions failed \(connect_error"):
        _run(compose_app, f"http://127.0.0.1:{port}")
    assert not (tmp_path / "real_runs").exists() or not any((tmp_path / "real_runs").iterdir())


@pytest.mark.parametrize("overrides, fragment", [
    (["backend.base_url=not-a-url"], "base_url='not-a-url' is not an http(s)://host[:port] address"),
    (["backend.base_url=ftp://x:21"], "is not an http(s)://host[:port] address"),
    (["backend.endpoint=embeddings"], "endpoint='embeddings'; use one of ['chat', 'completions']"),
    (["backend.endpoint=chat", "backend.send_token_ids=true"], "send_token_ids=true needs endpoint=completions"),
    (["backend.send_token_ids=maybe"], "send_token_ids='maybe'"),
    (["backend.api_key_env=GST_NO_SUCH_VARIABLE"], "api_key_env='GST_NO_SUCH_VARIABLE', but that environment variable is not set"),
])
def test_bad_server_settings_are_one_line(compose_app: Compose, tmp_path: Path, overrides: list[str], fragment: str) -> None:
    _workload(tmp_path, [(0, 5, 3)])
    with pytest.raises(InputError) as err:
        _run(compose_app, "http://127.0.0.1:9", *overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_bearer_token_is_sent_and_written_nowhere(compose_app: Compose, tmp_path: Path, server: Callable[..., Server],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GST_TEST_TOKEN", "s3cret-token-value")
    srv = server({"default": {"first_token_ms": 2, "token_gap_ms": 2}})
    _workload(tmp_path, [(0, 5, 3), (1_000_000, 5, 3)])
    out = _run(compose_app, srv.url, "backend.api_key_env=GST_TEST_TOKEN")
    assert load_run(out).meta["backend"]["api_key_env"] == "GST_TEST_TOKEN"
    for f in out.rglob("*"):
        assert b"s3cret-token-value" not in f.read_bytes(), f


def test_request_outcomes_table_reads_back(compose_app: Compose, tmp_path: Path, server: Callable[..., Server]) -> None:
    srv = server({"default": {"first_token_ms": 2, "token_gap_ms": 2}, "requests": {"r1": {"status": 404}}})
    _workload(tmp_path, [(0, 5, 3), (1_000_000, 5, 3)])
    out = _run(compose_app, srv.url)
    frame: Optional[pd.DataFrame] = load_run(out).outcomes
    assert frame is not None and frame["http_status"].tolist() == [200, 404] and frame["tokens"].tolist() == [3, 0]
    assert not (out / "iteration_metrics.csv").exists()  # a server's steps are not seen
