"""workload-spec ``mode=export``: one workload written in the input format of another tool, so that tool replays the
same requests.

    workload-spec mode=export workload_id=<id> export.format=<vidur|mooncake|vllm> export.path=<file>

| format | file | per request | arrivals |
| --- | --- | --- | --- |
| ``vidur`` | CSV ``arrived_at,num_prefill_tokens,num_decode_tokens`` (Vidur's trace request generator) | lengths | seconds, to the µs |
| ``mooncake`` | JSONL ``{"timestamp", "input_length", "output_length"}`` (Mooncake's traces) | lengths | integer ms |
| ``vllm`` | JSONL ``{"prompt", "output_tokens"}`` (``vllm bench serve --dataset-name custom``) | prompt text, decode length | none: vLLM's ``--request-rate`` |

Each is read back by workload-spec's importer of the same name (``vidur_trace``, ``mooncake``, ``prompts_jsonl``)
with the same lengths, and arrivals within the format's resolution. The ``vllm`` prompts are the workload's texts,
or (for synthetic prompts) texts of exactly the prompt's token count (:mod:`.prompt_text`). The file is written
whole or not at all, and an existing one is replaced only with ``overwrite=true``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from gpu_simulate_test.config.apps import WorkloadSpecAppConfig
from gpu_simulate_test.config.workload import TokenizerConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError, OutputExistsError
from gpu_simulate_test.io.units import NS_PER_MS
from gpu_simulate_test.workloads.load import Workload, load_workload
from gpu_simulate_test.workloads.prompt_text import prompt_texts
from gpu_simulate_test.workloads.tokenizer import load_tokenizer

NS_PER_US = 1_000
US_PER_S = 1_000_000


def _seconds_to_us(ns: int) -> str:
    """``ns`` as decimal seconds rounded to the µs, written exactly (no float formatting on the way)."""
    us = int(np.rint(ns / NS_PER_US))
    return f"{us // US_PER_S}.{us % US_PER_S:06d}"


def export_vidur(workload: Workload, app: WorkloadSpecAppConfig) -> str:
    rows = [f"{_seconds_to_us(r.arrival_time_ns)},{r.num_prefill_tokens},{r.num_decode_tokens}" for r in workload.requests]
    return "\n".join(["arrived_at,num_prefill_tokens,num_decode_tokens", *rows]) + "\n"


def export_mooncake(workload: Workload, app: WorkloadSpecAppConfig) -> str:
    return "".join(json.dumps({"timestamp": int(np.rint(r.arrival_time_ns / NS_PER_MS)), "input_length": r.num_prefill_tokens,
                               "output_length": r.num_decode_tokens}) + "\n" for r in workload.requests)


def export_vllm(workload: Workload, app: WorkloadSpecAppConfig) -> str:
    """Prompts as text, under the tokenizer the workload was built with (from its meta; else the app's)."""
    cfg = workload.meta.get("config") or {}
    tok_cfg = (cfg.get("workload") or {}).get("tokenizer") or {}
    model = cfg.get("model") or {}
    tok = load_tokenizer(TokenizerConfig(**tok_cfg) if tok_cfg else app.workload.tokenizer,
                         str(model.get("hf_id") or app.model.hf_id), int(model.get("vocab_size") or app.model.vocab_size))
    texts = prompt_texts(workload, tok)
    return "".join(json.dumps({"prompt": texts[r.request_id], "output_tokens": r.num_decode_tokens}, ensure_ascii=False) + "\n"
                   for r in workload.requests)


EXPORTERS: dict[str, Callable[[Workload, WorkloadSpecAppConfig], str]] = {
    "vidur": export_vidur,
    "mooncake": export_mooncake,
    "vllm": export_vllm,
}


def export_workload(app: WorkloadSpecAppConfig) -> Path:
    """Write workload ``app.workload_id`` to ``app.export.path`` in ``app.export.format``; returns the file."""
    fmt, dest = app.export.format, app.export.path
    if fmt not in EXPORTERS:
        raise InputError(f"export.format={fmt!r}: choose one of {sorted(EXPORTERS)}")
    if not app.workload_id or not dest:
        raise InputError("mode=export needs workload_id=<id> and export.path=<file>")
    path = Path(dest)
    if path.exists() and not app.overwrite:
        raise OutputExistsError(f"{path} exists already; pass overwrite=true to replace it, or choose another export.path")
    workload = load_workload(Path(app.paths.workloads), str(app.workload_id))
    text = EXPORTERS[fmt](workload, app)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EnvironmentUnavailableError(f"cannot write {path}: {exc.strerror}; choose a writable export.path") from exc
    return path
