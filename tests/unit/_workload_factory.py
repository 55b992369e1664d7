"""Write small workload directories for tests, in the layout of ``specs/workload.md`` (no workload-spec needed).

Reusable by any stage's tests: ``make_workload(root, "w1", [(arrival_ns, prefill, decode), ...])``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Sequence

import pandas as pd

from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.schemas import TRACE_INTERVALS, TRACE_LENGTHS
from gpu_simulate_test.io.tables import write_table


def make_workload(
    root: Path, workload_id: str, requests: Sequence[tuple[int, int, int]], *, vocab: int = 1000, seed: int = 0
) -> Path:
    """One request per (arrival_time_ns, num_prefill_tokens, num_decode_tokens), ids 0.. in the given order."""
    path = Path(root) / workload_id
    path.mkdir(parents=True, exist_ok=False)
    rng = random.Random(seed)
    ids = list(range(len(requests)))
    arrivals = [a for a, _, _ in requests]
    write_table(
        pd.DataFrame({"request_id": ids, "num_prefill_tokens": [p for _, p, _ in requests], "num_decode_tokens": [d for _, _, d in requests]}),
        path / TRACE_LENGTHS.filename,
        TRACE_LENGTHS,
    )
    write_table(
        pd.DataFrame({"request_id": ids, "arrival_time_ns": arrivals, "inter_arrival_ns": [0] + [b - a for a, b in zip(arrivals, arrivals[1:])]}),
        path / TRACE_INTERVALS.filename,
        TRACE_INTERVALS,
    )
    with open(path / "prompts.jsonl", "w") as fh:
        for rid, (_, prefill, _) in zip(ids, requests):
            fh.write(json.dumps({"request_id": rid, "prompt_token_ids": [rng.randrange(vocab) for _ in range(prefill)]}) + "\n")
    write_json(path / "workload_meta.json", build_meta(kind="workload", id=workload_id, config={"test": True}, inputs={}))
    return path
