"""A scripted OpenAI-compatible streaming server, for the tests and benchmarks of the ``openai`` backend.

It runs in its own process on loopback, so the client under test shares no interpreter (and no GIL) with it::

    python -m gpu_simulate_test.testing_server --script script.json [--log log.jsonl]

and prints ``port=<n>`` once it listens. ``POST /v1/completions`` and ``/v1/chat/completions`` answer with a
Server-Sent-Events stream shaped like vLLM's: each chunk carries text and, when asked for, cumulative usage
(``stream_options.continuous_usage_stats``) or the chunk's token ids; a usage-only chunk and ``data: [DONE]`` end it.

What each request gets is scripted (:class:`Script`): the default, overridden per request by the value of its
``X-Request-Id`` header. Token ``k`` of a request is due ``first_token_ms + k * token_gap_ms`` after its body was read;
tokens are grouped into chunks of ``chunk_tokens`` (cycled), each chunk sent when its last token is due. The log
(one JSON line per request) records when every chunk was actually written (``chunks``: ``[after the write, tokens,
before the write]``), on ``time.perf_counter_ns`` - the same monotonic clock as the client's in another process on this
machine - so a test compares the times the client recorded with the times the server sent, not with the script alone.

One thread serves every connection from one selector loop (epoll, whose millisecond timeouts it tops up with a
sleep): at 500 requests/s with 80 streams in flight, a thread per connection spent more CPU handing the interpreter
around than writing, and fell behind its script.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import json
import os
import selectors
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from gpu_simulate_test.io.units import NS_PER_MS

ROUTES = ("/v1/completions", "/v1/chat/completions")
# Pieces due this soon are sent at once: a wake-up per piece (8,000/s in the benchmark) with sleep's ~0.1 ms overshoot
# each would leave the server behind its script.
SEND_AHEAD_NS = 100_000


@dataclass(frozen=True)
class Script:
    """How the server answers one request (JSON keys of the script file have these names)."""

    status: int = 200  # not 200: an OpenAI-style JSON error with this status instead of a stream
    first_token_ms: float = 10.0  # token 0 is due this long after the request's body was read
    token_gap_ms: float = 10.0  # then one token every this long
    chunk_tokens: Union[int, list[int]] = 1  # tokens per chunk, cycled (the last chunk may hold fewer)
    num_tokens: Optional[int] = None  # tokens to stream; null: the request's max_tokens
    usage: str = "continuous"  # continuous (every chunk) | final (the last chunk only) | none
    token_ids: bool = False  # each chunk lists its token ids (choices[0].token_ids)
    accept_token_ids: bool = True  # false: a prompt given as token ids is refused with 400, as text-only servers do
    accept_exact_length: bool = True  # false: ignore_eos/min_tokens are refused with 400, as OpenAI's API does
    text_prompt_tokens: Optional[int] = None  # usage.prompt_tokens for a text prompt; null: its word count
    truncate_after_chunks: Optional[int] = None  # close the connection after this many chunks, mid-stream
    malformed_after_chunks: Optional[int] = None  # after this many chunks send a data line that is not JSON
    drop: bool = False  # close the connection without any answer
    exit: bool = False  # the whole server process exits on this request (later connections are refused)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Script:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ValueError(f"{where}: unknown script key(s) {unknown}; known: {sorted(known)}")
        return cls(**obj)

    def chunk_sizes(self, total: int) -> list[int]:
        sizes = [self.chunk_tokens] if isinstance(self.chunk_tokens, int) else list(self.chunk_tokens)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"chunk_tokens={self.chunk_tokens!r}: every size must be >= 1")
        out, i = [], 0
        while sum(out) < total:
            out.append(min(sizes[i % len(sizes)], total - sum(out)))
            i += 1
        return out


@dataclass
class ScriptBook:
    """The default script and the per-request ones, keyed by ``X-Request-Id``."""

    default: Script = field(default_factory=Script)
    requests: dict[str, Script] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Optional[Path]) -> ScriptBook:
        if path is None:
            return cls()
        obj = json.loads(Path(path).read_text())
        default = Script.from_dict(obj.get("default", {}), f"{path}: default")
        per = {str(k): Script.from_dict({**asdict(default), **v}, f"{path}: requests.{k}") for k, v in obj.get("requests", {}).items()}
        return cls(default, per)

    def for_request(self, request_id: Optional[str]) -> Script:
        return self.requests.get(request_id or "", self.default)


def _chunk_bytes(payload: bytes) -> bytes:
    """One piece of an HTTP/1.1 chunked body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _response(status: int, obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (status, b"OK" if status == 200 else b"Error", len(body))) + body


def _error(status: int, message: str) -> bytes:
    return _response(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class _Piece:
    """Bytes of one stream, due at ``due_ns``; ``tokens`` is 0 for what carries none (the tail, a malformed line)."""

    due_ns: int
    data: bytes
    tokens: int


def plan(req: dict[str, Any], script: Script, chat: bool, received: int, prompt_tokens: int) -> tuple[list[_Piece], bool]:
    """The pieces of a scripted stream, and whether it ends properly (else the connection closes after the last)."""
    usage_mode = script.usage if (req.get("stream_options") or {}).get("include_usage") else "none"
    total = script.num_tokens if script.num_tokens is not None else int(req["max_tokens"])
    pieces: list[_Piece] = []
    done = 0
    for k, n in enumerate(script.chunk_sizes(total)):
        if script.truncate_after_chunks is not None and k >= script.truncate_after_chunks:
            return pieces, False  # no terminating chunk: the client sees a cut body
        done += n
        due = received + round((script.first_token_ms + (done - 1) * script.token_gap_ms) * NS_PER_MS)
        if script.malformed_after_chunks is not None and k >= script.malformed_after_chunks:
            pieces.append(_Piece(due, _chunk_bytes(b"data: {not json\n\n"), 0))
            return pieces, False
        text = "".join(f" t{done - n + j}" for j in range(n))
        choice: dict[str, Any] = ({"index": 0, "delta": {"content": text}, "finish_reason": None} if chat
                                  else {"index": 0, "text": text, "finish_reason": None})
        if script.token_ids:
            choice["token_ids"] = list(range(done - n, done))
        obj: dict[str, Any] = {"id": "cmpl-scripted", "object": "chat.completion.chunk" if chat else "text_completion",
                               "choices": [choice]}
        if usage_mode == "continuous":
            obj["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}
        pieces.append(_Piece(due, _chunk_bytes(_sse(obj)), n))
    tail = b""
    if usage_mode in ("continuous", "final"):
        tail += _sse({"id": "cmpl-scripted", "choices": [],
                      "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}})
    tail += b"data: [DONE]\n\n"
    pieces.append(_Piece(pieces[-1].due_ns if pieces else received, _chunk_bytes(tail) + b"0\r\n\r\n", 0))
    return pieces, True


class _Conn:
    """One client connection: bytes read so far, bytes not yet sent, and the stream it is answering."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.writing = False  # registered for EVENT_WRITE (bytes wait for the socket to drain)
        self.pieces: list[_Piece] = []  # the stream in progress
        self.next = 0
        self.ends_well = True
        self.sent: list[list[int]] = []
        self.record: dict[str, Any] = {}
        self.closed = False


class _Server:
    """The selector loop: accept, parse requests (HTTP/1.1 keep-alive, one at a time per connection), and send every
    stream's pieces when they are due."""

    def __init__(self, book: ScriptBook, log_path: Optional[Path]) -> None:
        self.book = book
        self.log = open(log_path, "a") if log_path else None
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.due: list[tuple[int, int, _Conn]] = []  # (due_ns, tie, conn) of each stream's next piece
        self.tie = itertools.count()

    def serve_forever(self) -> None:
        while True:
            timeout = None
            if self.due:
                wait_ns = self.due[0][0] - SEND_AHEAD_NS - time.perf_counter_ns()
                if wait_ns > NS_PER_MS:
                    timeout = (wait_ns - NS_PER_MS) / 1e9  # epoll rounds up to the ms: wake up to 1 ms early ...
                else:
                    if wait_ns > 0:
                        time.sleep(wait_ns / 1e9)  # ... and sleep the rest (nanosleep: ~0.1 ms late, the ahead time)
                    timeout = 0
            for key, mask in self.sel.select(timeout):
                if key.data is None:
                    self._accept()
                elif mask & selectors.EVENT_READ:
                    self._read(key.data)
                else:
                    self._flush(key.data)
            now = time.perf_counter_ns()
            while self.due and self.due[0][0] <= now + SEND_AHEAD_NS:
                _, _, conn = heapq.heappop(self.due)
                if not conn.closed:
                    self._send_piece(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, selectors.EVENT_READ, _Conn(sock))

    def _close(self, conn: _Conn) -> None:
        if not conn.closed:
            conn.closed = True
            self.sel.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        self._next_request(conn)

    def _next_request(self, conn: _Conn) -> None:
        """Handle the request in the buffer, if one is complete and no stream is in progress."""
        if conn.pieces or conn.closed:
            return
        head_end = conn.inbuf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = conn.inbuf[:head_end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", 0))
        if len(conn.inbuf) < head_end + 4 + length:
            return
        body = conn.inbuf[head_end + 4:head_end + 4 + length]
        conn.inbuf = conn.inbuf[head_end + 4 + length:]
        self._handle(conn, lines[0].split(" ")[1], headers, body)

    def _handle(self, conn: _Conn, path: str, headers: dict[str, str], body: bytes) -> None:
        received = time.perf_counter_ns()
        rid = headers.get("x-request-id")
        script = self.book.for_request(rid)
        if script.exit:
            os._exit(0)  # a server that dies: no cleanup, every connection drops
        if script.drop:
            self._close(conn)
            return
        if path not in ROUTES:
            self._reply(conn, _error(404, f"no route {path}"))
            return
        try:
            req = json.loads(body)
        except json.JSONDecodeError:
            self._reply(conn, _error(400, "body is not JSON"))
            return
        chat = path.endswith("chat/completions")
        prompt = req["messages"][-1]["content"] if chat else req.get("prompt")
        ids = isinstance(prompt, list)
        if script.status != 200:
            self._reply(conn, _error(script.status, f"scripted error {script.status}"))
            return
        if ids and not script.accept_token_ids:
            self._reply(conn, _error(400, "prompt must be a string"))
            return
        if not script.accept_exact_length and ("ignore_eos" in req or "min_tokens" in req):
            self._reply(conn, _error(400, "Unrecognized request argument supplied: ignore_eos"))
            return
        prompt_tokens = len(prompt) if ids else (script.text_prompt_tokens or len(str(prompt).split()))
        conn.pieces, conn.ends_well = plan(req, script, chat, received, prompt_tokens)
        conn.next, conn.sent = 0, []
        conn.record = {"request_id": rid, "received_ns": received, "prompt": "ids" if ids else "text",
                       "prompt_tokens": prompt_tokens, "max_tokens": req.get("max_tokens"), "keys": sorted(req)}
        self._write(conn, STREAM_HEAD)
        self._schedule(conn)

    def _schedule(self, conn: _Conn) -> None:
        if conn.next < len(conn.pieces):
            heapq.heappush(self.due, (conn.pieces[conn.next].due_ns, next(self.tie), conn))
            return
        if self.log is not None:  # the stream is over
            self.log.write(json.dumps({**conn.record, "chunks": conn.sent}) + "\n")
            self.log.flush()
        conn.pieces = []
        if not conn.ends_well:
            self._close(conn)
        else:
            self._next_request(conn)

    def _send_piece(self, conn: _Conn) -> None:
        piece = conn.pieces[conn.next]
        began = time.perf_counter_ns()
        self._write(conn, piece.data)
        if conn.closed:
            return
        if piece.tokens:  # the bytes left between ``began`` and the stamp after the write
            conn.sent.append([time.perf_counter_ns(), piece.tokens, began])
        conn.next += 1
        self._schedule(conn)

    def _reply(self, conn: _Conn, data: bytes) -> None:
        self._write(conn, data)
        self._next_request(conn)

    def _write(self, conn: _Conn, data: bytes) -> None:
        """Send now; what the socket does not take waits for it to drain (in order)."""
        conn.outbuf += data
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf) if conn.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.outbuf = conn.outbuf[sent:]
        if conn.writing != bool(conn.outbuf):
            conn.writing = bool(conn.outbuf)
            self.sel.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.writing else 0), conn)


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """The server's log, by ``X-Request-Id``."""
    out = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        out[str(rec["request_id"])] = rec
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, default=None, help="JSON: {'default': {...}, 'requests': {id: {...}}}")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per request here")
    args = parser.parse_args(argv)
    server = _Server(ScriptBook.load(args.script), args.log)
    gc.collect()  # a collection would hold every stream's next write; what the server allocates has no cycles
    gc.freeze()
    gc.disable()
    print(f"port={server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
