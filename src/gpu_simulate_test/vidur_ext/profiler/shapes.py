"""Batch shapes of one iteration, written as short strings in configs and tables.

``prefill:<chunk>`` one request's prompt chunk (nothing cached yet); ``prefill:<chunk>@<kv>`` a later chunk of a long
prompt, ``kv`` of its tokens cached by the chunks before; ``decode:<batch>x<kv>`` ``batch`` requests decoding one
token each with ``kv`` tokens cached; ``mixed:<chunk>+<batch>x<kv>`` a whole prompt and the decodes at once;
``mixed:<chunk>@<kv>+<batch>x<kv>`` the last chunk of a longer prompt (``kv`` of its tokens cached) beside the decodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from gpu_simulate_test.errors import InputError

_RE = re.compile(r"^(?:prefill:(?P<p>\d+)(?:@(?P<pk>\d+))?|decode:(?P<db>\d+)x(?P<dk>\d+)"
                 r"|mixed:(?P<mp>\d+)(?:@(?P<mpk>\d+))?\+(?P<mb>\d+)x(?P<mk>\d+))$")


@dataclass(frozen=True)
class BatchShape:
    prefill_tokens: int  # 0: no prefill request in the iteration
    decode_batch: int  # 0: no decode requests
    decode_kv: int  # tokens cached per decode request before this iteration
    prefill_kv: int = 0  # prompt tokens of the prefill request cached before this chunk (a later chunk of a long prompt)

    @classmethod
    def parse(cls, text: str, where: str = "profile") -> "BatchShape":
        m = _RE.match(text.strip())
        if m is None:
            raise InputError(
                f"{where}: batch shape {text!r} is not prefill:<chunk>[@<kv>], decode:<batch>x<kv> or "
                "mixed:<chunk>[@<kv>]+<batch>x<kv>"
            )
        g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
        shape = cls(g.get("p", g.get("mp", 0)), g.get("db", g.get("mb", 0)), g.get("dk", g.get("mk", 0)),
                    g.get("pk", g.get("mpk", 0)))
        if (g.get("db", 1) == 0 or g.get("mb", 1) == 0 or g.get("p", 1) == 0 or g.get("mp", 1) == 0
                or g.get("pk", 1) == 0 or g.get("mpk", 1) == 0 or ("dk" in g and shape.decode_kv == 0)
                or ("mk" in g and shape.decode_kv == 0)):
            raise InputError(f"{where}: batch shape {text!r} has a zero count; every number must be >= 1")
        return shape

    @property
    def kind(self) -> str:
        if self.prefill_tokens and self.decode_batch:
            return "mixed"
        return "prefill" if self.prefill_tokens else "decode"

    def __str__(self) -> str:
        decode = f"{self.decode_batch}x{self.decode_kv}"
        chunk = f"{self.prefill_tokens}" + (f"@{self.prefill_kv}" if self.prefill_kv else "")
        return {"prefill": f"prefill:{chunk}", "decode": f"decode:{decode}", "mixed": f"mixed:{chunk}+{decode}"}[self.kind]

    @property
    def batch_size(self) -> int:
        return self.decode_batch + (1 if self.prefill_tokens else 0)

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.decode_batch

    @property
    def longest_prompt(self) -> int:
        """The longest prompt a request of this shape has (a decode's prompt is its KV)."""
        return max(self.prefill_kv + self.prefill_tokens, self.decode_kv)

    def with_decode_kv(self, kv: int) -> "BatchShape":
        """The same shape with another KV per decode request (the one the measured steps had)."""
        return replace(self, decode_kv=int(kv))

    def vidur_batch(self) -> tuple[list[int], list[int]]:
        """Vidur's ``(num_q_tokens, num_kv_tokens)`` lists: KV counted after this iteration, as its schedulers do."""
        pre = [self.prefill_tokens] if self.prefill_tokens else []
        q = pre + [1] * self.decode_batch
        kv = [self.prefill_kv + p for p in pre] + [self.decode_kv + 1] * self.decode_batch
        return q, kv
