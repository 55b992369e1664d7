"""workload-spec mode=export: each format read back by its importer gives the same lengths, and arrivals within the
format's resolution (Vidur CSV: 1 us; Mooncake: 1 ms; vLLM's custom dataset carries none)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from gpu_simulate_test.cli.workload_spec import run_mode
from gpu_simulate_test.errors import InputError, OutputExistsError
from gpu_simulate_test.workloads.load import Workload, load_workload

Compose = Callable[..., Any]
# Poisson arrivals land on arbitrary nanoseconds, so every rounding shows.
GENERATE = ["workload=poisson", "workload.num_requests=30", "workload.arrival.qps=37", "workload.lengths.source=uniform",
            "workload.lengths.prefill.min=1", "workload.lengths.prefill.max=300", "workload.lengths.decode.min=1",
            "workload.lengths.decode.max=50", "seed=3"]
IMPORTERS = {"vidur": "vidur_trace", "mooncake": "mooncake", "vllm": "prompts_jsonl"}
RESOLUTION_NS = {"vidur": 500, "mooncake": 500_000}  # half the format's unit: rounding to the nearest


def _workload(compose_app: Compose, overrides: list[str]) -> Workload:
    path = Path(run_mode(compose_app("workload_spec", overrides)).split("path=")[1].strip())
    return load_workload(path.parent, path.name)


def _round_trip(compose_app: Compose, tmp_path: Path, wl: Workload, fmt: str) -> Workload:
    dest = tmp_path / f"export.{fmt}"
    printed = run_mode(compose_app("workload_spec", ["mode=export", f"workload_id={wl.workload_id}", f"export.format={fmt}",
                                                     f"export.path={dest}"]))
    assert printed == f"exported: {dest}"
    arrival = "workload.arrival.process=all_at_once" if fmt == "vllm" else "workload.arrival.process=trace"
    return _workload(compose_app, [f"workload.lengths.source={IMPORTERS[fmt]}", f"workload.lengths.path={dest}",
                                   "workload.num_requests=null", arrival, "workload.name=back"])


@pytest.mark.parametrize("fmt", ["vidur", "mooncake", "vllm"])
def test_export_and_import_back_keeps_lengths_and_arrivals(compose_app: Compose, tmp_path: Path, fmt: str) -> None:
    wl = _workload(compose_app, GENERATE)
    back = _round_trip(compose_app, tmp_path, wl, fmt)
    lengths = [(r.num_prefill_tokens, r.num_decode_tokens) for r in wl.requests]
    assert [(r.num_prefill_tokens, r.num_decode_tokens) for r in back.requests] == lengths
    if fmt in RESOLUTION_NS:
        err = np.abs(np.array([r.arrival_time_ns for r in back.requests]) - [r.arrival_time_ns for r in wl.requests])
        assert err.max() <= RESOLUTION_NS[fmt]
        assert err.max() > 0  # the format's rounding is real (Poisson arrivals are not on its grid)


def test_vllm_export_keeps_the_texts_of_a_text_workload(compose_app: Compose, tmp_path: Path) -> None:
    src = tmp_path / "prompts.jsonl"
    prompts = ["How many roads must a man walk down?", "Le vent se lève, il faut tenter de vivre.", "数到十: 一二三四五六七八九十"]
    src.write_text("".join(json.dumps({"prompt": p, "num_decode_tokens": 5 + i}) + "\n" for i, p in enumerate(prompts)))
    wl = _workload(compose_app, ["workload=prompts_jsonl", f"workload.lengths.path={src}", "workload.num_requests=null"])
    dest = tmp_path / "custom.jsonl"
    run_mode(compose_app("workload_spec", ["mode=export", f"workload_id={wl.workload_id}", "export.format=vllm",
                                           f"export.path={dest}"]))
    lines = [json.loads(line) for line in dest.read_text().splitlines()]
    assert lines == [{"prompt": p, "output_tokens": 5 + i} for i, p in enumerate(prompts)]


def test_export_refuses_bad_requests_and_keeps_existing_files(compose_app: Compose, tmp_path: Path) -> None:
    wl = _workload(compose_app, GENERATE[:2])
    dest = tmp_path / "out.csv"
    dest.write_text("keep me")
    base = ["mode=export", f"workload_id={wl.workload_id}", f"export.path={dest}"]
    with pytest.raises(OutputExistsError, match="exists already"):
        run_mode(compose_app("workload_spec", [*base, "export.format=vidur"]))
    assert dest.read_text() == "keep me"
    with pytest.raises(InputError, match=r"export.format='csv': choose one of \['mooncake', 'vidur', 'vllm'\]"):
        run_mode(compose_app("workload_spec", [*base, "export.format=csv"]))
    with pytest.raises(InputError, match="workload 'nope' not found"):
        run_mode(compose_app("workload_spec", ["mode=export", "workload_id=nope", "export.format=vidur", f"export.path={tmp_path / 'x'}"]))
    run_mode(compose_app("workload_spec", [*base, "export.format=vidur", "overwrite=true"]))
    assert dest.read_text().startswith("arrived_at,num_prefill_tokens,num_decode_tokens\n0.000000,")
    assert not list(tmp_path.glob(".out.csv.partial-*"))
