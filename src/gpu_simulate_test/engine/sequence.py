"""One request inside the engine, and one iteration's batch as the scheduler hands it to the runner."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not admitted yet (new, or restarted after a preemption)
    RUNNING = "running"  # admitted: holds KV blocks
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """A request's tokens and progress. ``token_ids`` = prompt + generated; KV exists for ``num_computed_tokens``.

    A preempted sequence restarts by recompute: its blocks are freed, ``num_computed_tokens`` returns to 0 and the
    prompt plus every token generated so far is prefilled again before it decodes on.

    ``num_prefill_tokens``: tokens the current attempt prefills (the prompt; after a restart, every token known
    then), Vidur's ``Request.num_prefill_tokens``. The prefill is complete once that many are computed; from then
    on each iteration decodes one token. It is needed because a prefill chunk can leave exactly one prompt token,
    which ``num_computed_tokens`` alone cannot tell from a decode.
    """

    seq_id: int
    token_ids: list[int]
    num_prompt_tokens: int
    max_tokens: int  # tokens to generate (exact: EOS is ignored)
    arrival_time_ns: int = 0
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    num_restarts: int = 0
    num_prefill_tokens: int = field(init=False)
    # the prompt as int32, made where the request is added (off the steps' critical path): packing a prompt chunk
    # copies from it instead of converting a list of Python ints
    prompt_array: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.num_prefill_tokens = len(self.token_ids)
        self.prompt_array = np.array(self.token_ids, dtype=np.int32)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def is_prefill_complete(self) -> bool:
        return self.num_computed_tokens >= self.num_prefill_tokens


class BatchEntry(NamedTuple):
    """One sequence's share of an iteration: ``num_q_tokens`` tokens from position ``start`` (= KV cached before).

    ``samples``: the entry reaches the sequence's last known token, so the iteration yields its next token.
    ``is_prefill``: the tokens are (re-)prefill tokens, not a decode step.
    A named tuple (immutable, fields by name) rather than a frozen dataclass: it is built once per sequence per
    iteration, and 128 frozen dataclasses cost ~120 us to build against ~20-40 us for these (specs/engine.md, Cost).
    """

    seq: Sequence
    start: int
    num_q_tokens: int
    samples: bool
    is_prefill: bool


@dataclass(frozen=True)
class ScheduledBatch:
    """The entries of one iteration, in the order the policy formed them."""

    entries: tuple[BatchEntry, ...]

    @functools.cached_property  # read several times a step, on its critical path when it is packed at its start
    def num_tokens(self) -> int:
        return sum(e.num_q_tokens for e in self.entries)

    @functools.cached_property
    def is_decode_only(self) -> bool:
        return all(not e.is_prefill for e in self.entries)
