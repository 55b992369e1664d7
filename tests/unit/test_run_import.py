"""compare-runs mode=import: the three tools' files (hand-written in their layouts, tests/fixtures/imports/) give the
same real run of the same workload; bad files are one error naming the file, the record and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.cli.compare_runs import run_mode
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.testing import make_workload

Compose = Callable[..., Any]
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
FILES = {"vllm": "vllm_bench_serve_detailed.json", "inference_perf": "inference_perf_per_request_lifecycle_metrics.json",
         "aiperf": "aiperf_profile_export.jsonl"}
MS = 1_000_000
# Every file records the same four requests: sent 100 ms apart; r0 and r1 stream one token per chunk, r2 streams its
# 4 tokens in 3 chunks (so only its first and last token's times are known), r3 failed with a server error.
TOKENS = {0: ([0, 1, 2, 3], [50 * MS, 60 * MS, 70 * MS, 80 * MS]),
          1: ([0, 1, 2, 3], [160 * MS, 180 * MS, 200 * MS, 220 * MS]),
          2: ([0, 3], [270 * MS, 330 * MS])}


def _workload(root: Path) -> str:
    make_workload(root / "workloads", "wl", [(i * 100 * MS, 10 * (i + 1), 4) for i in range(4)])
    return "wl"


def _import(compose_app: Compose, fmt: str, path: Path, *more: str) -> str:
    return run_mode(compose_app("compare_runs", ["mode=import", f"import_format={fmt}", f"import_file={path}", "workload_id=wl", *more]))


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_each_tool_gives_the_same_run(compose_app: Compose, tmp_path: Path, fmt: str) -> None:
    _workload(tmp_path)
    text = _import(compose_app, fmt, FIX / FILES[fmt], "run_id=imp")
    assert "left out: 1 failed and 0 missing requests" in text
    assert "cannot be compared (the file has no per-token times): itl of 1 of 3 requests" in text
    run = load_run(tmp_path / "real_runs" / "imp")
    got = {rid: (g["token_index"].tolist(), g["token_time_ns"].tolist()) for rid, g in run.tokens.groupby("request_id")}
    assert got == TOKENS
    assert run.requests["arrival_time_ns"].tolist() == [0, 100 * MS, 200 * MS]  # the tool's send times
    assert run.requests["num_decode_tokens_actual"].tolist() == [4, 4, 4]
    assert run.requests["tpot_ns"].tolist() == [10 * MS, 20 * MS, 20 * MS]  # exact for r2 too: (330 - 270) / 3
    meta = run.meta
    assert meta["status"] == "complete" and (meta["num_failed"], meta["missing"]) == (1, 0)
    assert meta["token_times"] == {"every_token": 2, "first_and_last_only": 1}
    assert meta["inputs"]["import_file"]["path"] == str(FIX / FILES[fmt])


def _edited(tmp_path: Path, fmt: str, edit: Callable[[Any], None]) -> Path:
    src = FIX / FILES[fmt]
    if fmt == "aiperf":
        lines = [json.loads(line) for line in src.read_text().splitlines()]
        edit(lines)
        text = "".join(json.dumps(x) + "\n" for x in lines)
    else:
        obj = json.loads(src.read_text())
        edit(obj)
        text = json.dumps(obj)
    out = tmp_path / src.name
    out.write_text(text)
    return out


@pytest.mark.parametrize("fmt, edit, fragment", [
    ("vllm", lambda o: o.pop("itls"), "missing key(s) ['itls']"),
    ("vllm", lambda o: o["ttfts"].pop(), "'itls' must be a list as long as 'ttfts' (3)"),
    ("inference_perf", lambda o: o[1]["info"]["response_metrics"].pop("output_token_times"),
     "entry 1: missing field 'info.response_metrics.output_token_times'"),
    ("inference_perf", lambda o: o[0].pop("start_time"), "entry 0: missing field 'start_time'"),
    ("inference_perf", lambda o: o[1]["info"].update(input_tokens=11, request_metrics={"text": {"input_tokens": 11}}),
     "the input length is 11, the workload's prompt has 10 tokens"),
    ("aiperf", lambda o: o[1]["metadata"].pop("session_num"), "line 2: missing field 'metadata.session_num'"),
    ("aiperf", lambda o: o[0]["metrics"]["time_to_first_token"].update(unit="furlongs"),
     "line 1: metric 'time_to_first_token' needs a value and a time unit"),
    ("aiperf", lambda o: o[4]["metrics"].pop("output_sequence_length"), "line 5: missing field 'output_sequence_length.value'"),
])
def test_a_bad_file_is_one_error_and_writes_nothing(compose_app: Compose, tmp_path: Path, fmt: str,
                                                    edit: Callable[[Any], None], fragment: str) -> None:
    _workload(tmp_path)
    path = _edited(tmp_path, fmt, edit)
    with pytest.raises(InputError) as err:
        _import(compose_app, fmt, path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "real_runs").exists()


def test_unknown_format_and_missing_file(compose_app: Compose, tmp_path: Path) -> None:
    _workload(tmp_path)
    with pytest.raises(InputError, match=r"import_format='guidellm' is not one of \['aiperf', 'inference_perf', 'requests_csv', 'vllm'\]"):
        _import(compose_app, "guidellm", FIX / FILES["vllm"])
    with pytest.raises(InputError, match="no such file"):
        _import(compose_app, "aiperf", tmp_path / "nope.jsonl")
