"""The scheduling policies, exactly as vidur-sim simulates them (Vidur 0.0.26 plus ``vidur_ext/tracing.py``).

Each policy is a transcription of one Vidur replica scheduler's ``_get_next_batch`` into the engine's terms,
over the same state: ``waiting`` is Vidur's ``_request_queue`` (restarted sequences go to its front),
``running`` its ``_preempted_requests`` (admitted sequences not in the iteration in flight, in the very order Vidur
keeps them), the block ledger its allocation map. The correspondence, the order of every check and the places
where the order of a list matters are in specs/engine.md; a difference from vidur-sim is a bug here.

Vidur's ``num_processed_tokens`` counts the token emitted when a prefill completes; in the engine that token is
appended to ``token_ids``, so Vidur's processed count is ``num_computed_tokens`` during a prefill and
``num_tokens`` (= ``num_computed_tokens + 1``) once it is complete.

The engine forms iteration n+1 while iteration n runs on the GPU, as if no request arrives before n ends, and at n's
end asks :meth:`Scheduler.revise` for the batch it would have formed then: the requests that arrived meanwhile can
only extend an admission that stopped at an empty queue, or (``vllm``) replace decodes formed with an empty queue.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter
from typing import Callable

from gpu_simulate_test.engine.block_manager import BlockManager
from gpu_simulate_test.engine.config import EngineConfig
from gpu_simulate_test.engine.sequence import BatchEntry, ScheduledBatch, Sequence, SequenceStatus
from gpu_simulate_test.errors import InputError

_by_arrival = attrgetter("arrival_time_ns")
_entry = tuple.__new__  # _entry(BatchEntry, (...)): a named tuple without its keyword-parsing __new__ (hot loop)


class Scheduler:
    """Forms each iteration's batch by the configured policy and keeps the KV block ledger.

    ``num_blocks`` is the pool as Vidur counts it (vidur-sim is given the same number) and what the runner
    allocates: the ledger's reservation covers every token stored, so no physical slack is needed.
    """

    def __init__(self, config: EngineConfig, num_blocks: int) -> None:
        form = POLICIES.get(config.policy)
        if form is None:
            raise InputError(f"engine policy {config.policy!r} is unknown; choose one of {sorted(POLICIES)}")
        for name in ("max_batch_tokens", "max_requests_per_batch", "block_size"):
            if getattr(config, name) < 1:
                raise InputError(f"engine {name}={getattr(config, name)}; it must be >= 1")
        if num_blocks < 1:
            raise InputError(f"engine num_blocks={num_blocks}; the KV pool needs at least one block")
        self.config = config
        self._form: Callable[[Scheduler], list[BatchEntry]] = form
        self.block_manager = BlockManager(num_blocks, config.block_size)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self._watermark = int(config.watermark_blocks_fraction * num_blocks)  # Vidur's own rounding
        self._num_admitted = 0  # sequences holding blocks: len(Vidur's allocation map)
        # How requests queued after the last schedule() could change its batch (revise): None (they cannot),
        # "admit" (its admission stopped at an empty queue), "replace" (vllm decodes formed with an empty queue;
        # _walked and _grown undo that walk)
        self._open: str | None = None
        self._walked: list[Sequence] = []
        self._grown: list[Sequence] = []

    # -- the engine's API --------------------------------------------------------------------------------------

    def check_request(self, num_prompt_tokens: int, max_tokens: int) -> None:
        """Raise :class:`InputError` for a request this engine could never serve (callers may check a whole
        workload up front). The KV rule is vidur-sim's, so both sides refuse the same requests."""
        cfg = self.config
        if num_prompt_tokens < 1 or max_tokens < 1:
            raise InputError(
                f"a request needs >= 1 prompt token and >= 1 token to generate, got {num_prompt_tokens} and {max_tokens}"
            )
        context = num_prompt_tokens + max_tokens
        if context > cfg.model.max_position_embeddings:
            raise InputError(
                f"a request of {num_prompt_tokens} prompt + {max_tokens} generated tokens exceeds the model's context "
                f"of {cfg.model.max_position_embeddings}; shorten it"
            )
        need = -(-context // cfg.block_size)
        usable = self.block_manager.num_blocks - self._watermark
        if need > usable:
            raise InputError(
                f"a request of {context} tokens needs {need} KV blocks of {cfg.block_size} tokens, but the pool of "
                f"{self.block_manager.num_blocks} blocks leaves {usable} above the watermark; it could never run "
                "(raise num_blocks or gpu_memory_utilization)"
            )
        if cfg.policy == "vllm" and num_prompt_tokens > cfg.max_batch_tokens:
            raise InputError(
                f"a prompt of {num_prompt_tokens} tokens exceeds max_batch_tokens={cfg.max_batch_tokens}; the vllm "
                "policy prefills whole prompts, so it would never be scheduled (raise max_batch_tokens)"
            )

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence (after every request added before it: first come, first served)."""
        self.check_request(seq.num_prompt_tokens, seq.max_tokens)
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch | None:
        """The next iteration; None when there is nothing to run. Every entry's block table covers
        ``start + num_q_tokens`` tokens."""
        entries = self._form(self)
        if entries:
            return ScheduledBatch(tuple(entries))
        if self.waiting and self._num_admitted == 0:
            seq = self.waiting[0]
            raise InputError(
                f"request {seq.seq_id} can never run again: restarted after a preemption with {seq.num_prefill_tokens} "
                f"tokens to prefill, more than max_batch_tokens={self.config.max_batch_tokens}, which the vllm policy "
                "prefills whole (Vidur 0.0.26 stalls the same way); raise max_batch_tokens or num_blocks"
            )
        return None

    def can_schedule_ahead(self) -> bool:
        """Whether :meth:`schedule` may run before the iteration in flight ends (then :meth:`revise` at its end).
        Not when a ``vllm`` decode walk formed with an empty queue could preempt: a prompt arriving before the end
        would have been admitted instead, and a restart cannot be undone."""
        if self.config.policy != "vllm" or self.waiting:
            return True
        block_size = self.config.block_size
        grow = sum(len(s.token_ids) > len(s.block_table) * block_size for s in self.running)
        return grow < self.block_manager.num_free

    def revise(self, batch: ScheduledBatch) -> ScheduledBatch | None:
        """The batch :meth:`schedule` would form now, given the batch it formed before the requests queued since
        (``waiting`` gained them at its end, in arrival order): the same batch, the same with those of them
        admitted after its entries, or (``vllm`` decodes) that walk undone and the batch formed afresh."""
        open_, self._open = self._open, None
        if open_ is None or not self.waiting:
            return batch
        if open_ == "admit":
            entries = list(batch.entries)
            if self.config.policy == "sarathi":
                self._admit_sarathi(entries, batch.num_tokens)
            else:
                self._admit_vllm(entries, batch.num_tokens)
            return batch if len(entries) == len(batch.entries) else ScheduledBatch(tuple(entries))
        for seq in reversed(self._grown):  # the walk's blocks back, last taken first: the free stack as it was
            self.block_manager.return_last(seq)
        self.running = self._walked
        return self.schedule()

    def postprocess(self, batch: ScheduledBatch, sampled: list[int] | None) -> list[Sequence]:
        """Apply one iteration: ``sampled`` holds one token per sampling entry, in entry order; None while the
        iteration still runs (each gets a placeholder, -1, until :meth:`settle`: no decision reads a token's value).

        Appends them, advances ``num_computed_tokens``, finishes (and frees) the sequences that generated
        ``max_tokens``; the rest rejoin ``running`` in entry order (Vidur's ``on_batch_end``). Returns the finished.
        """
        finished: list[Sequence] = []
        rejoin = self.running.append
        k = 0
        for seq, start, num_q, samples, _ in batch.entries:
            seq.num_computed_tokens = start + num_q
            if samples:
                tokens = seq.token_ids
                tokens.append(-1 if sampled is None else sampled[k])
                k += 1
                if len(tokens) == seq.num_prompt_tokens + seq.max_tokens:
                    self.block_manager.free(seq)
                    self._num_admitted -= 1
                    seq.status = SequenceStatus.FINISHED
                    finished.append(seq)
                    continue
            rejoin(seq)
        if sampled is not None and k != len(sampled):
            raise ValueError(f"postprocess: {len(sampled)} sampled tokens for {k} sampling entries")
        return finished

    @staticmethod
    def settle(batch: ScheduledBatch, sampled: list[int]) -> None:
        """Write an iteration's tokens over the placeholders ``postprocess(batch, None)`` appended (each is still
        its sequence's last token: nothing is appended before the iteration's end)."""
        sampling = [e.seq for e in batch.entries if e.samples]
        if len(sampling) != len(sampled):
            raise ValueError(f"settle: {len(sampled)} sampled tokens for {len(sampling)} sampling entries")
        for seq, token in zip(sampling, sampled):
            seq.token_ids[-1] = token

    def has_unfinished(self) -> bool:
        return bool(self.waiting) or self._num_admitted > 0

    # -- the ledger and restarts (Vidur's allocate / free / Request.restart) ------------------------------------

    def _admit(self, seq: Sequence, num_blocks: int) -> None:
        self.block_manager.allocate(seq, num_blocks)
        self._num_admitted += 1
        seq.status = SequenceStatus.RUNNING

    def _restart(self, seq: Sequence) -> None:
        """Preempt by recompute: free the blocks; every known token becomes the prompt of a prefill from scratch.

        Vidur's ``Request.restart`` with the rule of ``vidur_ext/tracing.py``: mid-prefill, the prefill simply
        starts over (its length is unchanged, as ``num_tokens`` is during a prefill)."""
        self.block_manager.free(seq)
        self._num_admitted -= 1
        seq.num_computed_tokens = 0
        seq.num_prefill_tokens = len(seq.token_ids)
        seq.status = SequenceStatus.WAITING
        seq.num_restarts += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def _preempt_for(self, seq: Sequence, running: list[Sequence]) -> None:
        """No block is free for the running decode ``seq``: Vidur's ``while not _can_allocate_request(...)`` loop
        restarts the last sequence not walked yet (popped off the end of ``running``; usually the newest) until a
        block is free or, with none left after ``seq``, ``seq`` itself (then ``seq.status`` is ``WAITING``)."""
        while self.block_manager.num_free < 1:
            if running[-1] is seq:
                self._restart(seq)
                return
            self._restart(running.pop())

    def _decodes(self, running: list[Sequence], entries: list[BatchEntry], prefills: list[Sequence],
                 grown: list[Sequence] | None = None) -> None:
        """Vidur's walk over ``_preempted_requests`` (both policies), which it empties: each decode needs one free
        block ("vllm requires at least one block to be available") or preempts (:meth:`_preempt_for`), then
        reserves one more block if its processed tokens exceed its reservation. Sequences mid-prefill go to
        ``prefills`` (sarathi; vllm's running sequences all decode). Vidur's batch-cap check in this walk never
        fires: at most ``max_requests_per_batch`` sequences hold blocks, so the walk ends first."""
        blocks = self.block_manager
        block_size = blocks.block_size
        append = entries.append
        free = blocks.num_free
        for seq in running:  # victims are popped off the end of ``running``: the walk stops before them
            if seq.num_computed_tokens < seq.num_prefill_tokens:
                prefills.append(seq)
                continue
            if free < 1:
                self._preempt_for(seq, running)
                free = blocks.num_free
                if seq.status is SequenceStatus.WAITING:
                    continue
            num_tokens = len(seq.token_ids)  # Vidur's processed tokens
            if num_tokens > len(seq.block_table) * block_size:
                blocks.allocate(seq, 1)
                free -= 1
                if grown is not None:
                    grown.append(seq)
            append(_entry(BatchEntry, (seq, num_tokens - 1, 1, True, False)))

    # -- the policies ---------------------------------------------------------------------------------------------

    def _form_sarathi(self) -> list[BatchEntry]:
        """Vidur's ``SarathiReplicaScheduler._get_next_batch`` (one stage): running decodes in ``running`` order,
        then the running prefills' next chunks within the token budget, then new sequences first come first
        served while the budget, the batch cap and the watermark allow."""
        budget = self.config.max_batch_tokens
        entries: list[BatchEntry] = []
        prefills: list[Sequence] = []
        # A decode's next chunk is 1 token, never 0, so Vidur's "0 tokens: skip" branch never takes one.
        self._decodes(self.running, entries, prefills)
        num_tokens = len(entries)
        skipped: list[Sequence] = []
        for seq in prefills:
            start = seq.num_computed_tokens
            num_q = min(seq.num_prefill_tokens - start, budget - num_tokens)
            if num_q <= 0:
                skipped.append(seq)
                continue
            entries.append(_entry(BatchEntry, (seq, start, num_q, start + num_q == seq.num_prefill_tokens, True)))
            num_tokens += num_q
        skipped.sort(key=_by_arrival)  # stable, as Vidur's sorted(): equal arrivals keep the order above
        self.running = skipped
        self._admit_sarathi(entries, num_tokens)
        return entries

    def _admit_sarathi(self, entries: list[BatchEntry], num_tokens: int) -> None:
        """Sarathi's step 4: new sequences from the front of ``waiting`` while the budget, the batch cap and the
        watermark allow; ``_open`` says whether it stopped at an empty queue."""
        cfg = self.config
        cap = cfg.max_requests_per_batch
        budget = cfg.max_batch_tokens
        block_size = cfg.block_size
        waiting = self.waiting
        free = self.block_manager.num_free
        while waiting:
            if self._num_admitted == cap or len(entries) == cap:
                break
            seq = waiting[0]
            prefill = seq.num_prefill_tokens
            need = -(-prefill // block_size)
            if free - need < self._watermark:
                break
            num_q = min(prefill, budget - num_tokens)
            if num_q <= 0:
                break
            waiting.popleft()
            self._admit(seq, need)
            free -= need
            entries.append(_entry(BatchEntry, (seq, 0, num_q, num_q == prefill, True)))
            num_tokens += num_q
        self._open = None if waiting else "admit"

    def _form_vllm(self) -> list[BatchEntry]:
        """Vidur's ``VLLMReplicaScheduler._get_next_batch``: whole prompts first come first served while the
        token cap, the batch cap and the watermark allow; only when none was admitted, every running decode
        (sorted by arrival)."""
        entries: list[BatchEntry] = []
        queued = bool(self.waiting)
        self._admit_vllm(entries, 0)
        if entries:
            return entries
        self.running.sort(key=_by_arrival)
        prefills: list[Sequence] = []
        self._walked, self._grown = list(self.running), []
        self._decodes(self.running, entries, prefills, self._grown)
        assert not prefills, "vllm prefills whole prompts: every running sequence decodes"
        self.running = []
        self._open = None if queued else "replace"
        return entries

    def _admit_vllm(self, entries: list[BatchEntry], num_tokens: int) -> None:
        """vllm's admission: whole prompts from the front of ``waiting`` while the watermark, the token cap and the
        batch cap allow; ``_open`` says whether it stopped at an empty queue."""
        cfg = self.config
        cap = cfg.max_requests_per_batch
        block_size = cfg.block_size
        waiting = self.waiting
        free = self.block_manager.num_free
        while waiting:
            seq = waiting[0]
            prefill = seq.num_prefill_tokens
            need = -(-prefill // block_size)
            if free - need < self._watermark or num_tokens + prefill > cfg.max_batch_tokens:
                break
            if self._num_admitted == cap or len(entries) == cap:
                break
            waiting.popleft()
            self._admit(seq, need)
            free -= need
            entries.append(_entry(BatchEntry, (seq, 0, prefill, True, True)))
            num_tokens += prefill
        self._open = None if waiting else "admit"


POLICIES: dict[str, Callable[[Scheduler], list[BatchEntry]]] = {
    "sarathi": Scheduler._form_sarathi,
    "vllm": Scheduler._form_vllm,
}
