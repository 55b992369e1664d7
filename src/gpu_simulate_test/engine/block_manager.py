"""The paged KV pool's block ledger: which physical blocks each sequence holds.

The ledger is Vidur's, with block ids: a sequence's ``block_table`` is its entry of Vidur's allocation map
(``ceil(prefill / block_size)`` blocks at admission, one more whenever a decode's processed tokens exceed its
reservation), so the free count the policies decide on is exactly Vidur's ``num_blocks - num_allocated_blocks``.
That reservation always covers the tokens an iteration stores (specs/engine.md, "The block ledger"), so the
engine needs no physical blocks beyond the ledger's.
"""

from __future__ import annotations

from gpu_simulate_test.engine.sequence import Sequence


class BlockManager:
    """``num_blocks`` blocks of ``block_size`` tokens; ids handed out lowest first, freed ones reused first."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free = list(range(num_blocks - 1, -1, -1))  # a stack: pop() gives the next id

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self, seq: Sequence, num_blocks: int) -> None:
        """Append ``num_blocks`` blocks to the sequence's table; the policies never ask beyond the free count."""
        free = self._free
        if num_blocks > len(free):
            raise RuntimeError(
                f"KV block ledger: sequence {seq.seq_id} asks {num_blocks} blocks with {len(free)} free; "
                "the scheduling policy must never allow this (a bug in engine/scheduler.py)"
            )
        if num_blocks == 1:
            seq.block_table.append(free.pop())
        else:
            taken = free[len(free) - num_blocks:]
            del free[len(free) - num_blocks:]
            seq.block_table.extend(reversed(taken))

    def return_last(self, seq: Sequence) -> None:
        """Undo ``allocate(seq, 1)``: the sequence's last block goes back on top of the free stack."""
        self._free.append(seq.block_table.pop())

    def free(self, seq: Sequence) -> None:
        """Return all of the sequence's blocks to the pool."""
        self._free.extend(reversed(seq.block_table))
        seq.block_table = []
