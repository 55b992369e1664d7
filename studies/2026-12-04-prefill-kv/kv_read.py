"""Later prompt chunks read at their KV itself: the published points' chunk steps predicted both ways.

    .venv/bin/python studies/2026-12-04-prefill-kv/kv_read.py <publish root> <result folder> <setup>:<workload>:<load> ...

Vidur reads a chunk's attention row at its KV rounded up to 256 (the published bundles: the KV cached before the
chunk, ``prefill_attention_kv: before_chunk``), so a chunk after a prefix of 300 tokens is read at 512. Every step of
the point's first replicate is predicted from its own batch (``vidur_ext/replay.py``) with the point's bundle as
published and with ``prefill_attention_kv_read: between`` (the KV itself, linearly between the points on either
side; nothing else changes), and the steps with a prompt chunk are summarised by the chunk's prefix, as
``summary.md`` does. Run from the repository root after ``publish``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

import gpu_simulate_test.vidur_ext.replay as replay
from gpu_simulate_test.vidur_ext.step_correction import step_terms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-04-repack" / "cells"))
from point import replayed  # noqa: E402

BINS, LABELS = [-1, 0, 512, 2048, 10**9], ["0 (first chunk)", "1-512", "513-2048", "> 2048"]


def prefix(requests: str, kv_tokens: str) -> int:
    """The largest prefix (KV before the chunk) among the step's prompt chunks; -1: none."""
    return max((kv - q for q, kv in replay.step_shapes(requests, kv_tokens) if q > 1), default=-1)


def main() -> int:
    root, folder = Path(sys.argv[1]), Path(sys.argv[2])
    for arg in sys.argv[3:]:
        setup, workload, load = arg.split(":")
        _, it, _, published = replayed(root, folder, setup, workload, float(load))
        replay.step_terms = lambda meta, source: replace(  # type: ignore[assignment]
            step_terms(meta, source), keys=replace(step_terms(meta, source).keys, prefill_attention_kv_read="between"))
        try:
            _, _, _, between = replayed(root, folder, setup, workload, float(load))
        finally:
            replay.step_terms = step_terms
        steps = published[["error_pct"]].assign(between_pct=between["error_pct"],
                                                 prefix=[prefix(r, k) for r, k in zip(it["requests"], it["kv_tokens"])])
        chunks = steps[steps["prefix"] >= 0]
        table = chunks.groupby(pd.cut(chunks["prefix"], BINS, labels=LABELS), observed=True).agg(
            steps=("error_pct", "size"), published_pct=("error_pct", "median"), between_pct=("between_pct", "median"))
        every = steps[["error_pct", "between_pct"]].abs().median()
        print(f"{setup} {workload} {float(load):.0%}: every step's median |error| {every['error_pct']:.2f}% as "
              f"published, {every['between_pct']:.2f}% read between; steps with a chunk by its prefix (median error):")
        print(table.round(2).to_string(), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
