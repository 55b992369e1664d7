"""Reading one OpenAI-compatible Server-Sent-Events stream: its chunks, when each arrived and how many tokens it carried.

The bytes are fed as the client receives them, each read stamped once; an event is stamped with the read that
completed it. A chunk's token count comes from the server, never from guessing:

- cumulative ``usage.completion_tokens`` on every chunk (vLLM's and SGLang's ``continuous_usage_stats``): the chunk
  carried the increase;
- else the chunk's ``token_ids`` (vLLM's ``return_token_ids``): their number;
- else, when the stream's final usage counts exactly as many tokens as there were chunks with text, each such chunk
  carried one token (a chunk with text holds at least one, so no other split adds up).

Anything else leaves the per-token times unknown, and the request fails with a message saying what to enable.
Every token of a multi-token chunk gets the chunk's time (nothing is interpolated).

Every event is parsed as it completes, in the client loop's read callback, so this is the client's main cost per
streamed chunk: a chunk appends to three lists (no object per chunk), and the JSON goes through the decoder's
``raw_decode`` (``json.loads`` adds two whitespace scans and its own checks, ~40% of a small event's decode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

_DECODE = json.JSONDecoder().raw_decode


class StreamError(Exception):
    """The stream cannot give per-token times; ``status`` names why (a ``request_outcomes.csv`` status)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class StreamReader:
    """Collects the events of one stream; :meth:`token_times` turns them into one time per token."""

    def __init__(self) -> None:
        self._buf = b""
        # one entry per output chunk (an event with a ``choices`` entry), in parallel lists:
        self.chunk_times: list[int] = []  # when it arrived
        self.chunk_tokens: list[Optional[int]] = []  # what the server said it carried; None: no count given
        self.chunk_text: list[bool] = []  # whether it carried text
        self.events = 0
        self.done = False  # saw ``data: [DONE]`` (optional: transformers serve omits it)
        self.prompt_tokens: Optional[int] = None  # the server's count, from usage
        self.usage_total: Optional[int] = None  # the latest cumulative completion_tokens
        self._usage_seen = 0

    def feed(self, data: bytes, time_ns: int) -> None:
        """Bytes of the body as received at ``time_ns``; every event they complete is parsed now."""
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:  # CRLF line ends (SSE allows them); a lone CR at the end waits for its LF
            buf = buf.replace(b"\r\n", b"\n")
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            self._event(buf[start:end], time_ns)
            start = end + 2
        self._buf = buf[start:]

    def finish(self) -> None:
        """The body ended: nothing may be left half-sent."""
        if self._buf.strip():
            raise StreamError("bad_stream", f"the stream ended inside an event ({self._buf[:80]!r})")

    def _event(self, raw: bytes, time_ns: int) -> None:
        if raw[:6] == b"data: " and b"\n" not in raw:
            data = raw[6:]  # the usual event: one data line
        else:
            data = b"\n".join(ln[5:].lstrip(b" ") for ln in raw.split(b"\n") if ln.startswith(b"data:"))
        if not data:
            return  # a comment or keep-alive
        self.events += 1
        if data == b"[DONE]":
            self.done = True
            return
        try:
            text = data.decode()  # a str skips json's encoding detection
            obj, end = _DECODE(text)
            if end != len(text) and text[end:].strip():
                raise ValueError("extra data")
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            try:  # what json.loads also takes: whitespace before the value
                obj = json.loads(data)
            except ValueError:
                raise StreamError("bad_stream", f"event {self.events} is not JSON: {data[:80]!r}") from None
        if type(obj) is not dict:
            raise StreamError("bad_stream", f"event {self.events} is a JSON {type(obj).__name__}, not an object")
        if obj.get("error"):
            err = obj["error"]
            raise StreamError("server_error", str(err.get("message", err) if isinstance(err, dict) else err))
        usage = obj.get("usage")
        completion = None
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                self.prompt_tokens = usage["prompt_tokens"]
            completion = usage.get("completion_tokens")
            if isinstance(completion, int):
                if completion < self._usage_seen:
                    raise StreamError("bad_stream", f"event {self.events}: usage.completion_tokens went down "
                                                    f"({self._usage_seen} -> {completion})")
                self.usage_total = completion
            else:
                completion = None
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            if completion is not None:
                self._usage_seen = completion
            return  # the usage-only summary at the end
        choice = choices[0] if isinstance(choices[0], dict) else {}
        if completion is not None:  # the cumulative count: this chunk carried the increase
            tokens: Optional[int] = completion - self._usage_seen
            self._usage_seen = completion
        else:
            ids = choice.get("token_ids")
            tokens = len(ids) if isinstance(ids, list) else None
        text = choice.get("text")
        self.chunk_times.append(time_ns)
        self.chunk_tokens.append(tokens)
        self.chunk_text.append(bool(text) if type(text) is str else bool(_text(choice)))

    def tokens(self, max_tokens: int) -> TokenTimes:
        """One time per token, in order; :class:`StreamError` when the stream cannot say which chunk held which."""
        chunks = list(zip(self.chunk_times, self.chunk_tokens, self.chunk_text))
        counted = [(t, n) for t, n, _ in chunks if n]
        uncounted = [t for t, n, has_text in chunks if n is None and has_text]
        if uncounted:
            if counted or self.usage_total != len(uncounted):
                total = "no final usage" if self.usage_total is None else f"{self.usage_total} tokens in the final usage"
                raise StreamError("uncounted_stream", (
                    f"{len(uncounted)} chunks with text carry no token count ({total}); ask the server for per-chunk "
                    "usage (stream_options.continuous_usage_stats) or token ids"))
            counted = [(t, 1) for t in uncounted]
        times = [t for t, n in counted for _ in range(n)]
        if self.usage_total is not None and self.usage_total != len(times):
            raise StreamError("bad_stream", f"the chunks carried {len(times)} tokens but usage counts {self.usage_total}")
        if not times:
            raise StreamError("no_tokens", "the stream ended without a token")
        if len(times) > max_tokens:
            raise StreamError("too_many_tokens", f"the server sent {len(times)} tokens for max_tokens={max_tokens}")
        return TokenTimes(times, len(counted), sum(1 for _, n in counted if n > 1))


@dataclass(frozen=True)
class TokenTimes:
    """A finished stream: one arrival time per token, and how many chunks carried them."""

    times: list[int]
    chunks: int
    multi_token_chunks: int  # chunks that carried more than one token (their tokens share the chunk's time)


def _text(choice: dict[str, Any]) -> str:
    """A chunk's text: ``text`` (completions) or the delta's content or reasoning (chat)."""
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    for value in (choice.get("text"), delta.get("content"), delta.get("reasoning_content"), delta.get("reasoning")):
        if isinstance(value, str) and value:
            return value
    return ""
