"""A scripted OpenAI-compatible streaming server, for the tests and benchmarks of the ``openai`` backend.

It runs in its own process on loopback, so the client under test shares no interpreter (and no GIL) with it::

    python -m gpu_simulate_test.testing_server --script script.json [--log log.jsonl]

and prints ``port=<n>`` once it listens. ``POST /v1/completions`` and ``/v1/chat/completions`` answer with a
Server-Sent-Events stream shaped like vLLM's: each chunk carries text and, when asked for, cumulative usage
(``stream_options.continuous_usage_stats``) or the chunk's token ids; a usage-only chunk and ``data: [DONE]`` end it.

What each request gets is scripted (:class:`Script`): the default, overridden per request by the value of its
``X-Request-Id`` header. Token ``k`` of a request is due ``first_token_ms + k * token_gap_ms`` after its body was read;
tokens are grouped into chunks of ``chunk_tokens`` (cycled), each chunk sent when its last token is due, by one writer
thread for all streams (the per-connection threads only parse requests and wait). The log
(one JSON line per request) records when every chunk was actually written, on ``time.perf_counter_ns`` - the same
monotonic clock as the client's in another process on this machine - so a test compares the times the client
recorded with the times the server sent, not with the script alone.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional, Union

from gpu_simulate_test.io.units import NS_PER_MS

ROUTES = ("/v1/completions", "/v1/chat/completions")


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked bodies: the client's pool reuses connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received = time.perf_counter_ns()
        rid = self.headers.get("X-Request-Id")
        script = self.server.book.for_request(rid)
        if script.exit:
            os._exit(0)  # a server that dies: no cleanup, every connection drops
        if script.drop:
            self.close_connection = True
            return
        if self.path not in ROUTES:
            self._error(404, f"no route {self.path}")
            return
        try:
            req = json.loads(body)
        except json.JSONDecodeError:
            self._error(400, "body is not JSON")
            return
        chat = self.path.endswith("chat/completions")
        prompt = req["messages"][-1]["content"] if chat else req.get("prompt")
        ids = isinstance(prompt, list)
        if script.status != 200:
            self._error(script.status, f"scripted error {script.status}")
            return
        if ids and not script.accept_token_ids:
            self._error(400, "prompt must be a string")
            return
        if not script.accept_exact_length and ("ignore_eos" in req or "min_tokens" in req):
            self._error(400, "Unrecognized request argument supplied: ignore_eos")
            return
        prompt_tokens = len(prompt) if ids else (script.text_prompt_tokens or len(str(prompt).split()))
        total = script.num_tokens if script.num_tokens is not None else int(req["max_tokens"])
        sent = self._stream(req, script, chat, received, prompt_tokens, total)
        self.server.log({"request_id": rid, "received_ns": received, "prompt": "ids" if ids else "text",
                         "prompt_tokens": prompt_tokens, "max_tokens": req.get("max_tokens"),
                         "keys": sorted(req), "chunks": sent})

    def _stream(self, req: dict[str, Any], script: Script, chat: bool, received: int, prompt_tokens: int,
                total: int) -> list[list[int]]:
        """Send the scripted chunks (through the server's one writer thread); returns ``[sent_ns, tokens]`` per chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        usage_mode = script.usage if (req.get("stream_options") or {}).get("include_usage") else "none"
        pieces: list[_Piece] = []
        done = 0
        complete = False  # ends with the terminating chunk (else the connection is closed after the last piece)
        for k, n in enumerate(script.chunk_sizes(total)):
            if script.truncate_after_chunks is not None and k >= script.truncate_after_chunks:
                break  # no terminating chunk: the client sees a cut body
            done += n
            due = received + round((script.first_token_ms + (done - 1) * script.token_gap_ms) * NS_PER_MS)
            if script.malformed_after_chunks is not None and k >= script.malformed_after_chunks:
                pieces.append(_Piece(due, _chunk_bytes(b"data: {not json\n\n"), 0))
                break
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
        else:
            tail = b""
            if usage_mode in ("continuous", "final"):
                tail += _sse({"id": "cmpl-scripted", "choices": [],
                              "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}})
            tail += b"data: [DONE]\n\n"
            pieces.append(_Piece(pieces[-1].due_ns if pieces else received, _chunk_bytes(tail) + b"0\r\n\r\n", 0))
            complete = True
        stream = _Stream(self.wfile, pieces)
        self.server.writer.add(stream)
        stream.done.wait()
        if not complete or stream.failed:
            self.close_connection = True
        return stream.sent


@dataclass(frozen=True)
class _Piece:
    """Bytes of one stream, due at ``due_ns``; ``tokens`` is 0 for what carries none (the tail, a malformed line)."""

    due_ns: int
    data: bytes
    tokens: int


class _Stream:
    """One response's pieces, written in order by the writer thread; ``done`` is set after the last."""

    def __init__(self, wfile: Any, pieces: list[_Piece]) -> None:
        self.wfile = wfile
        self.pieces = pieces
        self.next = 0
        self.sent: list[list[int]] = []
        self.done = threading.Event()
        self.failed = False  # the client went away


class _Writer:
    """Writes every stream's pieces when they are due, from one thread: the handler threads only wait meanwhile,
    so no thread competes for the interpreter when a chunk is due, whatever the number of streams."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _Stream]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        threading.Thread(target=self._run, name="scripted-writer", daemon=True).start()

    def add(self, stream: _Stream) -> None:
        if stream.next >= len(stream.pieces):
            stream.done.set()
            return
        with self._cond:
            heapq.heappush(self._heap, (stream.pieces[stream.next].due_ns, next(self._seq), stream))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                delay = self._heap[0][0] - time.perf_counter_ns()
                if delay > 0:
                    self._cond.wait(delay / 1e9)  # a new, earlier piece wakes it too
                    continue
                _, _, stream = heapq.heappop(self._heap)
            piece = stream.pieces[stream.next]
            try:
                stream.wfile.write(piece.data)
                stream.wfile.flush()
            except OSError:
                stream.failed = True
                stream.done.set()
                continue
            if piece.tokens:
                stream.sent.append([time.perf_counter_ns(), piece.tokens])
            stream.next += 1
            self.add(stream)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of new connections must not be refused by the listen backlog

    def __init__(self, book: ScriptBook, log_path: Optional[Path]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.book = book
        self.writer = _Writer()
        self._log_lock = threading.Lock()
        self._log = open(log_path, "a") if log_path else None

    def log(self, record: dict[str, Any]) -> None:
        if self._log is None:
            return
        with self._log_lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()


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
    print(f"port={server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
