"""workload-spec end to end: determinism, content addressing, reruns, multirun, tokenizers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, OutputExistsError
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.workloads.load import load_workload
from gpu_simulate_test.workloads.spec import DATA_FILES, generate_workload

Compose = Callable[..., Any]
CLI = str(Path(sys.executable).parent / "workload-spec")
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "traces"


def _cli(root: Path, *overrides: str, multirun: bool = False) -> subprocess.Popen[str]:
    args = [CLI, *(["-m"] if multirun else []), f"paths.root={root}", *overrides]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root.parent)


def test_two_processes_two_roots_give_identical_files_and_id(tmp_path: Path) -> None:
    overrides = ("workload=poisson", "workload.num_requests=40", "seed=7")
    procs = [_cli(tmp_path / name, *overrides) for name in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dirs = [list((tmp_path / name / "workloads").iterdir()) for name in ("a", "b")]
    assert len(dirs[0]) == len(dirs[1]) == 1
    a, b = dirs[0][0], dirs[1][0]
    assert a.name == b.name and a.name.startswith("poisson-")
    assert f"workload_id={a.name}" in outs[0][0]
    for f in DATA_FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mb = read_meta(a / "workload_meta.json", "workload"), read_meta(b / "workload_meta.json", "workload")
    assert ma["stats"] == mb["stats"] and ma["id_basis"] == mb["id_basis"] and ma["files"] == mb["files"]
    assert ma["stats"]["num_requests"] == 40 and ma["seed"] == 7


def test_multirun_over_seeds_makes_two_workloads(tmp_path: Path) -> None:
    proc = _cli(tmp_path / "root", "seed=1,2", multirun=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    dirs = sorted((tmp_path / "root" / "workloads").iterdir())
    assert len(dirs) == 2
    arrivals = [(d / "trace_intervals.csv").read_text() for d in dirs]
    assert arrivals[0] != arrivals[1]
    assert sorted(read_meta(d / "workload_meta.json")["seed"] for d in dirs) == [1, 2]


def test_rerun_is_identical_and_tampering_is_caught(compose_app: Compose, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_app("workload_spec")
    path = generate_workload(cfg)
    meta_before = (path / "workload_meta.json").read_text()
    with caplog.at_level(logging.INFO):
        assert generate_workload(cfg) == path
    assert "identical, nothing rewritten" in caplog.text
    assert (path / "workload_meta.json").read_text() == meta_before

    (path / "trace_lengths.csv").write_text((path / "trace_lengths.csv").read_text().replace(",", ";", 1))
    with pytest.raises(OutputExistsError, match="differ.*overwrite=true"):
        generate_workload(cfg)
    cfg.overwrite = True
    assert generate_workload(cfg) == path
    w = load_workload(path.parent, path.name)
    assert len(w.requests) == 16 and w.workload_id == path.name


def test_seed_and_config_change_the_id(compose_app: Compose) -> None:
    a = generate_workload(compose_app("workload_spec", ["seed=0"]))
    b = generate_workload(compose_app("workload_spec", ["seed=1"]))
    c = generate_workload(compose_app("workload_spec", ["workload.arrival.qps=5"]))
    assert len({a.name, b.name, c.name}) == 3
    assert (a / "trace_intervals.csv").read_text() != (b / "trace_intervals.csv").read_text()
    # independent random streams: another arrival rate leaves lengths and prompts alone
    assert (a / "trace_lengths.csv").read_bytes() == (c / "trace_lengths.csv").read_bytes()
    assert (a / "prompts.jsonl").read_bytes() == (c / "prompts.jsonl").read_bytes()


def test_synthetic_prompts_and_meta(compose_app: Compose) -> None:
    cfg = compose_app("workload_spec", ["workload=gamma", "workload.num_requests=50"])
    w = load_workload(Path(cfg.paths.workloads), generate_workload(cfg).name)
    ids = w.prompt_token_ids()
    assert all(len(ids[r.request_id]) == r.num_prefill_tokens for r in w.requests)
    assert all(0 <= t < 151643 for v in ids.values() for t in v)  # ordinary Qwen ids, never special tokens
    m = w.meta
    assert m["kind"] == "workload" and m["config"]["workload"]["arrival"]["process"] == "gamma"
    assert m["stats"]["num_requests"] == 50 and m["stats"]["duration_s"] > 0 and m["max_context"] == 40960
    assert m["stats"]["prefill_tokens"]["max"] == max(r.num_prefill_tokens for r in w.requests)
    assert m["inputs"] == {} and set(m["files"]) == set(DATA_FILES)
    assert "provenance" in m and "host" in m["provenance"]


def test_same_trace_from_another_place_gives_the_same_id(compose_app: Compose, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "t.csv"
    copy.parent.mkdir()
    copy.write_bytes((FIX / "vidur_trace.csv").read_bytes())
    a = generate_workload(compose_app("workload_spec", ["workload=vidur_trace", f"workload.lengths.path={FIX / 'vidur_trace.csv'}"]))
    b = generate_workload(compose_app("workload_spec", ["workload=vidur_trace", f"workload.lengths.path={copy}"]))
    assert a.name == b.name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["workload=azure"], "set workload.lengths.path"),
        (["workload.lengths.source=pareto"], "unknown; choose a distribution"),
        (["workload.num_requests=null"], "needs a count"),
        (["seed=-1"], "must be >= 0"),
        (["workload.name=my workload"], "workload.name"),
        (["workload=prompts_jsonl", f"workload.lengths.path={FIX / 'prompts.jsonl'}", "workload.tokenizer.source=hf",
          "workload.tokenizer.name_or_path=/nonexistent/tok"], "neither a local directory"),
        (["workload=prompts_jsonl", f"workload.lengths.path={FIX / 'prompts.jsonl'}", "model=llama-2-7b"],
         "beyond the model's vocab_size 32000"),  # text needs the model's own tokenizer
        (["model=llama-2-7b", "model.ordinary_id_range=[0,40000]"], r"must be \[first, end\) with 0 <= first < end"),
        (["workload.max_context=50000"], r"workload.max_context=50000 must be in 1..40960, the context of model qwen3-tiny"),
    ],
)
def test_config_errors(compose_app: Compose, overrides: list[str], message: str) -> None:
    with pytest.raises((InputError, EnvironmentUnavailableError), match=message):
        generate_workload(compose_app("workload_spec", overrides))


def test_local_hf_tokenizer_is_used(compose_app: Compose, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "hello": 2, "world": 3, "gpu": 4, "cache": 5, "<extra>": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", bos_token="<s>", additional_special_tokens=["<extra>"])
    tok.save_pretrained(tmp_path / "tok")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello world gpu", "num_decode_tokens": 2}\n{"prompt": "cache <s> hello", "num_decode_tokens": 3}\n')
    cfg = compose_app("workload_spec", [
        "workload=prompts_jsonl", f"workload.lengths.path={prompts}", f"workload.tokenizer.name_or_path={tmp_path / 'tok'}",
    ])
    path = generate_workload(cfg)
    lines = [json.loads(x) for x in (path / "prompts.jsonl").read_text().splitlines()]
    assert lines[0]["prompt_token_ids"] == [2, 3, 4] and lines[0]["prompt"] == "hello world gpu"
    assert 1 not in lines[1]["prompt_token_ids"]  # "<s>" in a prompt is text, not the special token
    assert read_meta(path / "workload_meta.json")["tokenizer"] == {"kind": "hf", "name": "tok"}
    # a length-only trace needs no tokenizer: its ids come from the model's vocabulary, whatever tokenizer is named
    cfg2 = compose_app("workload_spec", ["workload=vidur_trace", f"workload.lengths.path={FIX / 'vidur_trace.csv'}",
                                         f"workload.tokenizer.name_or_path={tmp_path / 'tok'}"])
    w2 = load_workload(Path(cfg2.paths.workloads), generate_workload(cfg2).name)
    used = {t for v in w2.prompt_token_ids().values() for t in v}
    assert max(used) > 6 and max(used) < 151643 and w2.meta["tokenizer"] is None


def test_length_only_workload_needs_no_tokenizer(compose_app: Compose) -> None:
    """The issue's case: Vidur's length-only trace for Llama-2-7B failed on the offline Qwen tokenizer's ids."""
    base = ["workload=vidur_trace", f"workload.lengths.path={FIX / 'vidur_trace.csv'}", "model=llama-2-7b"]
    path = generate_workload(compose_app("workload_spec", base))
    w = load_workload(path.parent, path.name)
    used = sorted({t for v in w.prompt_token_ids().values() for t in v})
    assert 3 <= used[0] and used[-1] < 32000  # Llama-2's plain vocabulary: <unk>, <s>, </s> are 0-2
    assert w.meta["tokenizer"] is None and w.meta["synthetic_id_range"] == [3, 32000]
    # whatever tokenizer is (or is not) available, the same workload
    missing_tok = generate_workload(compose_app("workload_spec", [*base, "workload.tokenizer.source=hf",
                                                                  "workload.tokenizer.name_or_path=/nonexistent/tok"]))
    assert missing_tok.name == path.name
    # the seed draws them, as before
    other = generate_workload(compose_app("workload_spec", [*base, "seed=1"]))
    assert other.name != path.name


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "configs" / "workload").glob("*.yaml")))
def test_every_workload_option_composes(compose_app: Compose, option: str) -> None:
    cfg = compose_app("workload_spec", [f"workload={option}"])
    assert cfg.workload.name and cfg.workload.lengths.source and cfg.workload.arrival.process
