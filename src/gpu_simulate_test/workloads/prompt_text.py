"""Prompt texts of a workload, for the consumers that take text instead of token ids (a text-only server, vLLM's
custom dataset): the workload's own text where it kept one, else a text that the tokenizer encodes into exactly as
many tokens as the prompt has.

Decoding arbitrary ids rarely gives such a text (neighbouring pieces merge when re-encoded), so the decoded text is
re-encoded, cut or topped up with the prompt's own ids to the right length and decoded again, until it round-trips;
one correction suffices for nearly every prompt of Qwen's vocabulary.
"""

from __future__ import annotations

from typing import Optional, Sequence

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.workloads.load import Workload
from gpu_simulate_test.workloads.tokenizer import PromptTokenizer

MAX_CORRECTIONS = 8


def text_of_length(tok: PromptTokenizer, ids: Sequence[int]) -> Optional[str]:
    """A text that ``tok`` encodes into ``len(ids)`` tokens (close to ``ids``), or None if none was found."""
    n = len(ids)
    current = list(ids)
    for _ in range(MAX_CORRECTIONS + 1):
        text = tok.decode(current)
        encoded = tok.encode_batch([text])[0]
        if len(encoded) == n:
            return text
        current = encoded[:n] if len(encoded) > n else encoded + list(ids[len(encoded):n])
    return None


def prompt_texts(workload: Workload, tok: PromptTokenizer) -> dict[int, str]:
    """``request_id -> text`` for every prompt of ``workload``, each ``num_prefill_tokens`` long under ``tok``."""
    ids = workload.prompt_token_ids()  # validates prompts.jsonl first
    stored = workload.prompt_texts()
    out = {}
    for r in workload.requests:
        text = stored.get(r.request_id) or text_of_length(tok, ids[r.request_id])
        if text is None:
            raise InputError(
                f"{workload.path}: request {r.request_id}: no text of exactly {r.num_prefill_tokens} tokens found for its "
                f"prompt with tokenizer {tok.name!r}; send token ids instead, or use a workload built from prompt texts"
            )
        out[r.request_id] = text
    return out
