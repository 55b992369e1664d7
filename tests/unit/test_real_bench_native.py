"""real-bench ``backend=native`` on the CPU with qwen3-tiny (float32): the run files are the engine's own log, the
tokens are ``model.generate``'s on the same weights, nothing compiles or captures during the run, and every bad
input is refused before a request is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from gpu_simulate_test.backends import register_backend
from gpu_simulate_test.backends.native import NativeBackend
from gpu_simulate_test.engine import source_fingerprint
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.io.schemas import format_requests_field
from gpu_simulate_test.modeling import load_model
from gpu_simulate_test.real_bench.run import run_real_bench
from gpu_simulate_test.testing import make_workload
from gpu_simulate_test.workloads.load import load_workload

# (arrival ns, prompt tokens, decode tokens): three at once, whose contexts (3 blocks of 16 each) cannot all fit in
# a pool of 5 blocks, so the newest restart; a fourth arrives later. Prompts of 20-40 tokens under a budget of 16
# are chunked (sarathi) or fit whole (vllm, budget 48).
REQUESTS = [(0, 20, 20), (0, 24, 18), (0, 17, 16), (5_000_000, 40, 6)]
CASES = {
    "sarathi-chunked-preempting": ["backend.vidur_scheduler=sarathi", "backend.max_batch_tokens=16",
                                   "backend.num_blocks=5", "backend.watermark_blocks_fraction=0"],
    "vllm": ["backend.vidur_scheduler=vllm", "backend.max_batch_tokens=48"],
}


@register_backend("test-native-logged")
class _LoggedNative(NativeBackend):
    """The native driver, keeping every ``StepOutput`` the engine returned after the clock started."""

    log: list[Any] = []

    def start(self, recorder: Any) -> None:
        _LoggedNative.log = []
        step = self.engine.step

        def logged() -> Any:
            out = step()
            _LoggedNative.log.append(out)
            return out

        self.engine.step = logged
        super().start(recorder)


def _workload(tmp_path: Path, requests=REQUESTS) -> None:
    if not (tmp_path / "workloads" / "w1").exists():
        make_workload(tmp_path / "workloads", "w1", requests)


def _run(compose_app: Callable[..., Any], tmp_path: Path, overrides: list[str], requests=REQUESTS) -> Path:
    _workload(tmp_path, requests)
    return run_real_bench(compose_app("real_bench", ["workload_id=w1", "backend=native", *overrides]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_files_are_the_engine_log_and_tokens_are_generates(compose_app: Callable[..., Any], tmp_path: Path,
                                                               case: str) -> None:
    run_dir = _run(compose_app, tmp_path, ["backend.name=test-native-logged", "backend.warmup_requests=1",
                                           *CASES[case]])
    run = load_run(run_dir, "real_run")  # validates every file and their agreement
    log = _LoggedNative.log
    assert run.complete and len(run.requests) == len(REQUESTS)

    # iteration_metrics.csv is the engine's log, step for step: members in the policy's order, tokens, KV lengths,
    # and the step's own start and end on the run clock (one offset for all).
    it = run.iterations
    assert it is not None and len(it) == len(log)
    offset = int(it["start_time_ns"].iloc[0]) - log[0].start_ns
    for row, out in zip(it.itertuples(), log):
        assert row.requests == format_requests_field([(e.request_id, e.num_tokens) for e in out.entries])
        assert row.kv_tokens == ";".join(str(e.context_len) for e in out.entries)
        assert row.num_prefill_tokens == sum(e.num_tokens for e in out.entries if e.is_prefill)
        assert (row.start_time_ns, row.end_time_ns) == (out.start_ns + offset, out.end_ns + offset)

    # Each token is stamped with the end of the step that sampled it; dispatch precedes it.
    tokens: dict[int, list[int]] = {rid: [] for rid in range(len(REQUESTS))}
    stamps: dict[int, list[int]] = {rid: [] for rid in range(len(REQUESTS))}
    for out in log:
        for rid, tok in out.new_tokens:
            tokens[rid].append(tok)
            stamps[rid].append(out.end_ns + offset)
    got = run.tokens.groupby("request_id")["token_time_ns"].apply(list).to_dict()
    assert got == stamps
    assert (run.requests["dispatch_time_ns"] <= run.requests["first_token_time_ns"]).all()

    # The tokens are model.generate's on the same weights (modeling.load_model: same config, same seed).
    cfg = compose_app("real_bench", ["workload_id=w1", "backend=native"])
    hf = load_model(cfg.model, cfg.hardware, seed=cfg.seed).model
    prompts = load_workload(tmp_path / "workloads", "w1").prompt_token_ids()
    for rid, (_, _, decode) in enumerate(REQUESTS):
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompts[rid]]), attention_mask=torch.ones(1, len(prompts[rid]), dtype=torch.long),
                              max_new_tokens=decode, min_new_tokens=decode, do_sample=False, pad_token_id=0)
        assert tokens[rid] == out[0, len(prompts[rid]):].tolist(), f"request {rid}"

    # The meta: the pool the engine got, and nothing captured or compiled while the clock ran.
    meta = run.meta
    stats = meta["engine_stats"]
    assert stats["cuda_graph_captures_during_run"] == 0 and stats["compilations_during_run"] == 0
    assert meta["backend"]["num_blocks"] == stats["engine"]["num_blocks"]
    assert meta["backend"]["engine_code"] == source_fingerprint()  # what ran, whatever git says there
    assert meta["host_load"]["wall_s"] > 0 and meta["host_load"]["busy"] in (True, False)  # as every driver's run
    if case.startswith("sarathi"):
        assert meta["backend"]["num_blocks"] == 5 and stats["preemptions_during_run"] > 0
        assert any(1 < e.num_tokens < len(prompts[e.request_id]) and e.is_prefill for out in log for e in out.entries)
    else:  # num_blocks: null on the CPU: enough for every request at its longest context (config/limits.py)
        assert meta["backend"]["num_blocks"] == 4 * 3 + 1 and stats["preemptions_during_run"] == 0
        assert meta["backend"]["kv_pool"].startswith("sized from the workload")


@pytest.mark.parametrize("overrides, requests, error, match", [
    (["backend.num_blocks=2"], REQUESTS, InputError, r"request 0: a request of 40 tokens needs 3 KV blocks"),
    (["model.max_position_embeddings=32"], REQUESTS, InputError, r"exceed model qwen3-tiny's context of 32"),
    (["backend.vidur_scheduler=orca"], REQUESTS, InputError, "vidur_scheduler='orca' names no batching policy"),
    (["hardware=h200"], REQUESTS, EnvironmentUnavailableError, "hardware=h200 needs a CUDA GPU"),
    (["backend.vidur_scheduler=vllm", "backend.max_batch_tokens=32"], REQUESTS, InputError,
     "request 3: a prompt of 40 tokens exceeds max_batch_tokens=32"),
    (["backend.early_stop=true"], REQUESTS, InputError, "exactly num_decode_tokens"),
])
def test_bad_inputs_are_refused_before_any_request(compose_app: Callable[..., Any], tmp_path: Path, overrides: list[str],
                                                   requests, error: type, match: str) -> None:
    if "hardware=h200" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(error, match=match):
        _run(compose_app, tmp_path, overrides, requests)
    assert not (tmp_path / "real_runs").exists() or not any((tmp_path / "real_runs").iterdir())


@pytest.mark.parametrize(("graph_sizes", "token_sizes", "budget", "expected"), [
    ([1, 2, 4], [16, 32, 64, 128, 256, 512], 4096, 512),  # a whole-prompt cap above the largest bucket: eager there
    ([1, 2, 4], [16, 32, 64, 128, 256, 512], 512, None),  # the largest bucket holds the budget
    ([1, 2, 4], [16, 512, 4096], 4096, None),
    ([1, 2, 4], [], 512, 0),  # decode graphs only: every step with a prompt chunk is eager
    ([], [16, 512], 4096, None),  # no graphs at all (the CPU, or switched off): eager is the engine's mode, not a gap
])
def test_steps_over_the_largest_token_bucket_are_named(graph_sizes: list[int], token_sizes: list[int], budget: int,
                                                       expected: Any) -> None:
    from gpu_simulate_test.backends.native import uncaptured_tokens

    assert uncaptured_tokens(graph_sizes, token_sizes, budget) == expected


def test_no_measurement_runs_under_another_engines_ids(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """``engine.measured_with`` makes ids name another engine (republishing old archives): a run under it would be
    filed as that engine's, so the backend refuses to load."""
    from gpu_simulate_test.engine import measured_with

    with measured_with("0" * 12), pytest.raises(InputError, match="ids name engine 000000000000"):
        _run(compose_app, tmp_path, CASES["vllm"])
    assert not (tmp_path / "real_runs").exists() or not any((tmp_path / "real_runs").iterdir())
