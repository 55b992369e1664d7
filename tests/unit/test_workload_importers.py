"""Every importer on a small fixture in its real format, and every kind of bad input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.config.workload import TokenizerConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.workloads.importers import DRAW, IMPORTERS
from gpu_simulate_test.workloads.load import load_workload
from gpu_simulate_test.workloads.spec import generate_workload
from gpu_simulate_test.workloads.tokenizer import load_tokenizer

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
S = 1_000_000_000

Compose = Callable[..., Any]


def build(compose_app: Compose, source: str, path: Path, *extra: str):
    cfg = compose_app("workload_spec", [f"workload={source}", f"workload.lengths.path={path}", *extra])
    out = generate_workload(cfg)
    return load_workload(Path(cfg.paths.workloads), out.name), cfg


def test_azure(compose_app: Compose) -> None:
    w, _ = build(compose_app, "azure", FIX / "azure_conv.csv")
    assert [(r.num_prefill_tokens, r.num_decode_tokens) for r in w.requests][:2] == [(374, 44), (396, 109)]
    assert [r.arrival_time_ns for r in w.requests][:3] == [0, 4_314_579_000, 4_549_589_000]
    ids = w.prompt_token_ids()
    assert [len(ids[r.request_id]) for r in w.requests] == [r.num_prefill_tokens for r in w.requests]


def test_azure_time_scale_and_cap(compose_app: Compose) -> None:
    w, _ = build(compose_app, "azure", FIX / "azure_conv.csv", "workload.arrival.time_scale=2", "workload.num_requests=3")
    assert [r.arrival_time_ns for r in w.requests] == [0, 2 * 4_314_579_000, 2 * 4_549_589_000]


def test_burstgpt_skips_failed_requests(compose_app: Compose) -> None:
    w, _ = build(compose_app, "burstgpt", FIX / "burstgpt.csv")
    assert [(r.num_prefill_tokens, r.num_decode_tokens) for r in w.requests] == [
        (472, 18), (417, 276), (1360, 1), (443, 46), (1054, 138)
    ]
    assert [r.arrival_time_ns for r in w.requests] == [0, 113 * S, 126 * S, 132 * S, 182 * S]
    assert w.meta["filters"]["skipped_failed_requests"] == 1


def test_mooncake(compose_app: Compose) -> None:
    w, _ = build(compose_app, "mooncake", FIX / "mooncake.jsonl")
    assert [r.num_prefill_tokens for r in w.requests] == [6755, 7319, 7234, 2287, 9013]
    assert [r.arrival_time_ns for r in w.requests] == [0, 0, 3_052_000_000, 3_052_000_000, 3_555_000_000]


def test_vidur_trace(compose_app: Compose) -> None:
    w, _ = build(compose_app, "vidur_trace", FIX / "vidur_trace.csv", "workload.arrival.process=poisson")
    assert [(r.num_prefill_tokens, r.num_decode_tokens) for r in w.requests][2] == (211, 421)
    raw = IMPORTERS["vidur_trace"](FIX / "vidur_trace.csv")
    assert raw.timestamps_ns.tolist() == [0, 310_000_000, 940_500_000, 1_250_000_000]


def test_prompts_jsonl_tokenizes_and_keeps_text(compose_app: Compose) -> None:
    w, cfg = build(compose_app, "prompts_jsonl", FIX / "prompts.jsonl")
    lines = [json.loads(x) for x in (w.path / "prompts.jsonl").read_text().splitlines()]
    assert lines[3] == {"request_id": 3, "prompt": "What is 2 + 2?", "prompt_token_ids": [3838, 374, 220, 17, 488, 220, 17, 30]}
    # a special-token string inside a prompt is plain text, never the special id
    assert all(t < 151643 for x in lines for t in x["prompt_token_ids"])
    assert [r.num_decode_tokens for r in w.requests][:2] == [64, 17]
    d = cfg.workload.lengths.decode
    assert d.min <= w.requests[2].num_decode_tokens <= d.max  # drawn: the line has no count
    assert [r.num_prefill_tokens for r in w.requests] == [len(x["prompt_token_ids"]) for x in lines]


def test_sharegpt(compose_app: Compose) -> None:
    w, _ = build(compose_app, "sharegpt", FIX / "sharegpt.json", "workload.subsample=false")
    lines = [json.loads(x) for x in (w.path / "prompts.jsonl").read_text().splitlines()]
    assert [x["prompt"] for x in lines] == [
        "Summarize the main ideas of Jeff Walker's Product Launch Formula.",
        "Write a Python function that reverses a string.",
        "Translate 'good morning' into French.",
    ]
    assert w.meta["filters"]["skipped_conversations"] == 1
    raw = IMPORTERS["sharegpt"](FIX / "sharegpt.json")
    assert raw.decode_texts[2] == "Bonjour." and (raw.decode == DRAW).all()
    tok = load_tokenizer(TokenizerConfig(source="qwen"), "Qwen/Qwen3-0.6B")
    assert [r.num_decode_tokens for r in w.requests] == [len(x) for x in tok.encode_batch([raw.decode_texts[i] for i in range(3)])]
    assert w.meta["tokenizer"]["kind"] == "qwen"


def test_clip_imported_truncates_and_pads(compose_app: Compose) -> None:
    w, _ = build(
        compose_app, "prompts_jsonl", FIX / "prompts.jsonl",
        "workload.lengths.clip_imported=true", "workload.lengths.prefill.min=10", "workload.lengths.prefill.max=12",
    )
    lines = [json.loads(x) for x in (w.path / "prompts.jsonl").read_text().splitlines()]
    assert [r.num_prefill_tokens for r in w.requests] == [11, 12, 12, 10]
    assert lines[0]["prompt"].startswith("Explain")  # untouched
    assert "prompt" not in lines[3]  # padded: the text no longer matches the ids
    assert lines[3]["prompt_token_ids"][:8] == [3838, 374, 220, 17, 488, 220, 17, 30]
    assert w.meta["filters"]["clipped_lengths"] >= 3


# --- bad input -----------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / "in" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text(text)
    return p


AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
VT = "arrived_at,num_prefill_tokens,num_decode_tokens\n"
BAD_INPUTS = [
    ("mooncake", "t.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_len', r"line 2: not valid JSON"),
    # json's own "... starting at" message is not followed by a second "at"
    ("mooncake", "t.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_length": "ab',
     r"line 2: not valid JSON \(Unterminated string starting at column 34\); each line"),
    ("sharegpt", "s.json", '[{"conversations": [{"from": "human", "value": "hi', r"line 1: not valid JSON \(Unterminated string starting at column 48\); "),
    ("mooncake", "t.jsonl", '{"timestamp": 0, "input_len": 5, "output_length": 2}\n', r"line 1: missing key 'input_length' \(found 'input_len'"),
    ("mooncake", "t.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 0}\n', r"line 1, 'output_length': 0 is not a positive"),
    ("prompts_jsonl", "p.jsonl", '{"prompt": "hi"}\n[1, 2]\n', r"line 2: a JSON list, not an object"),
    ("prompts_jsonl", "p.jsonl", '{"prompt": ""}\n', r"line 1, 'prompt': the prompt is empty"),
    ("prompts_jsonl", "p.jsonl", '{"prompt": "hi", "num_decode_tokens": -3}\n', r"line 1, 'num_decode_tokens': -3 is not a positive"),
    ("prompts_jsonl", "p.jsonl", "\n\n", r"the file is empty"),
    ("sharegpt", "s.json", '[{"conversations": [{"from": "human", "value": "hi"}]},\n {"conversations": }]', r"line 2: not valid JSON \(Expecting value at column \d+\)"),
    ("sharegpt", "s.json", '[{"conversations": [{"from": "human"}]}]', r"entry 0: malformed conversation"),
    ("azure", "a.csv", "TIMESTAMP,ContextToken,GeneratedTokens\n2023-11-16 18:15:46,3,4\n", r"line 1: missing column\(s\) 'ContextTokens' \(found 'ContextToken'"),
    # GeneratedTokens missing: ContextTokens is needed as it is, so it is no rename candidate (it used to be offered)
    ("azure", "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n", r"line 1: missing column\(s\) 'GeneratedTokens'; the header is"),
    ("azure", "a.csv", AZ + "2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,-5,4\n", r"line 3, 'ContextTokens': -5 is not a positive"),
    ("azure", "a.csv", AZ + "2023-11-16 18:15:46,3,4\nyesterday,3,4\n", r"line 3, column 'TIMESTAMP': 'yesterday' is not a timestamp"),
    ("azure", "a.csv", AZ, r"has a header but no rows"),
    ("azure", "a.csv", "", r"the file is empty"),
    ("vidur_trace", "v.csv", VT + "0.0,10,5\n2.0,10,5\n1.0,10,5\n", r"line 4, 'arrived_at': timestamp goes backwards"),
    ("vidur_trace", "v.csv", VT + "0.0,10,0\n", r"line 2, 'num_decode_tokens': 0 is not a positive"),
    ("vidur_trace", "v.csv", VT + "0.0,10.5,3\n", r"line 2, 'num_prefill_tokens': 10.5 is not a whole number"),
    ("burstgpt", "b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,m,3,4,7,x\nabc,m,3,4,7,x\n",
     r"line 3, column 'Timestamp': 'abc' is not a number"),
    ("vidur_trace", "v.csv", VT + "0.0,30000,20000\n", r"v.csv: line 2: the request needs 30000 prompt \+ 20000 decode = 50000 tokens, more than the context limit 40960"),
]


@pytest.mark.parametrize(("source", "name", "text", "message"), BAD_INPUTS)
def test_bad_input_is_one_clear_error(compose_app: Compose, tmp_path: Path, source: str, name: str, text: str, message: str) -> None:
    path = _write(tmp_path, name, text)
    cfg = compose_app("workload_spec", [f"workload={source}", f"workload.lengths.path={path}"])
    with pytest.raises(InputError, match=message) as exc:
        generate_workload(cfg)
    assert str(path) in str(exc.value)
    assert "; " in str(exc.value)  # says what to do
    root = Path(cfg.paths.workloads)
    assert not root.exists() or not any(root.iterdir())


@pytest.mark.parametrize("ending", ["", "\n"])
def test_a_csv_without_final_newline_is_read_with_a_warning(compose_app: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           ending: str) -> None:
    """A file cut short mid-line still parses: without its final newline, the last value read is named."""
    path = _write(tmp_path, "v.csv", VT + "0.0,10,5\n1.0,12,7" + ending)
    with caplog.at_level(logging.WARNING, logger="gpu_simulate_test.workloads.importers"):
        w, _ = build(compose_app, "vidur_trace", path)
    assert [r.num_decode_tokens for r in w.requests] == [5, 7]
    warned = [r.getMessage() for r in caplog.records if "final newline" in r.getMessage()]
    if ending:
        assert warned == []
    else:
        assert warned == [f"{path}: line 3, the last line, has no final newline, as a file cut short would not either; its "
                          "last value read is num_decode_tokens='7': check that the file is complete"]


def test_drop_over_context_reports_how_many(compose_app: Compose, tmp_path: Path) -> None:
    path = _write(tmp_path, "v.csv", VT + "0.0,10,5\n1.0,30000,20000\n2.0,10,5\n3.0,50000,1\n")
    w, _ = build(compose_app, "vidur_trace", path, "workload.drop_over_context=true")
    assert [r.arrival_time_ns for r in w.requests] == [0, 2 * S]
    assert w.meta["filters"]["dropped_over_context"] == 2


def test_subsample_is_seeded_and_keeps_trace_order(compose_app: Compose, tmp_path: Path) -> None:
    rows = "".join(f"{i}.0,{i + 1},3\n" for i in range(50))
    path = _write(tmp_path, "v.csv", VT + rows)
    a, _ = build(compose_app, "vidur_trace", path, "workload.subsample=true", "workload.num_requests=10")
    b, _ = build(compose_app, "vidur_trace", path, "workload.subsample=true", "workload.num_requests=10", "seed=1")
    pa = [r.num_prefill_tokens for r in a.requests]
    pb = [r.num_prefill_tokens for r in b.requests]
    assert pa == sorted(pa) and pb == sorted(pb) and pa != pb and len(pa) == 10
    assert pa != list(range(1, 11))


def test_cli_bad_input_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 2}\nnot json\n')
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "workload-spec"), f"paths.root={tmp_path / 'out'}", "workload=mooncake",
         f"workload.lengths.path={path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {path}: line 2: not valid JSON")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "workloads").exists() or not any((tmp_path / "out" / "workloads").iterdir())
