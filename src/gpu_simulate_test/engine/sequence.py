"""One request inside the engine, and one iteration's batch as the scheduler hands it to the runner."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not admitted yet (new, or restarted after a preemption)
    RUNNING = "running"  # admitted: holds KV blocks
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """A request's tokens and progress. ``token_ids`` = prompt + generated; KV exists for ``num_computed_tokens``.

    A preempted sequence restarts by recompute: its blocks are freed, ``num_computed_tokens`` returns to 0 and the
    prompt plus every token generated so far is prefilled again before it decodes on.
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

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED


@dataclass(frozen=True)
class BatchEntry:
    """One sequence's share of an iteration: ``num_q_tokens`` tokens from position ``start`` (= KV cached before).

    ``samples``: the entry reaches the sequence's last known token, so the iteration yields its next token.
    ``is_prefill``: the tokens are (re-)prefill tokens, not a decode step.
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

    @property
    def num_tokens(self) -> int:
        return sum(e.num_q_tokens for e in self.entries)

    @property
    def is_decode_only(self) -> bool:
        return all(not e.is_prefill for e in self.entries)
