"""A small HTTP/1.1 client for the ``openai`` backend: keep-alive connections as asyncio protocols, one request at a
time on each, the response handed to a :class:`Receiver` from the loop's own read callback.

Why not aiohttp (the client before this one): its read path woke the request's task for every streamed chunk, through its
stream reader and three coroutine layers, and built each request through its trace signals and header machinery; at
500 requests/s of 16 chunks that was ~60 us of the loop's CPU per chunk and ~0.2 ms before a request's first byte,
and the loop, busy half the time, made dispatches and chunk stamps wait behind each other (``specs/run.md``). Here a
chunk costs one ``data_received`` call: the stamp is taken first thing, the chunked framing is undone in place, and
the receiver parses the event; a request is one ``transport.write`` of bytes serialized before the clock started.

It speaks only what an OpenAI-compatible server answers a streaming POST: a status line and headers, then a body
framed by ``Transfer-Encoding: chunked``, ``Content-Length`` or the connection's close. No redirects, proxies,
compression (requests say ``Accept-Encoding: identity``) or ``Expect: 100-continue``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Optional, Protocol
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 65536  # a status line and headers longer than this are not a server's answer


class HttpError(Exception):
    """An exchange that failed below the HTTP answer; ``status`` is its ``request_outcomes.csv`` status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Receiver(Protocol):
    """Where a response goes, as it arrives; an exception raised here ends the exchange (and closes the connection)."""

    def head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers (names lower-cased)."""

    def body(self, data: bytes, time_ns: int) -> None:
        """Body bytes (the transfer framing removed) of one read, stamped when the read arrived."""


class Target:
    """Where requests go: the address to connect to and the head every request starts with."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.scheme in ("http", "https")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: Optional[ssl.SSLContext] = ssl.create_default_context() if parts.scheme == "https" else None
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        authority = (f"[{self.host}]" if ":" in self.host else self.host) + ("" if default_port else f":{self.port}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._start = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n"

    def post(self, headers: dict[str, str], body: bytes) -> bytes:
        """The bytes of one POST, ready to write."""
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return f"{self._start}{lines}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`send` starts an exchange whose future ends with the response. A connection
    whose exchange ended cleanly goes back to its pool at once, from the read that ended it (not a loop turn later,
    when the request's task wakes up); one that cannot take another request closes."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._transport: Optional[asyncio.Transport] = None
        self.closed = False
        self._receiver: Optional[Receiver] = None
        self._done: Optional[asyncio.Future[bool]] = None  # the exchange's end: True if the connection can be reused
        self._buf = b""
        self._head = False  # the status line and headers were read
        self._chunked = False
        self._left = -1  # chunked: bytes left in the current chunk (0: at its CRLF; -1: at a size line); else of the body
        self._until_close = False
        self._keep_alive = True

    # --- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._done is None or self._done.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._feed(data, now)
        except Exception as exc:  # noqa: BLE001 - the receiver's verdict or a framing error ends this exchange only
            self._end(exc)

    def eof_received(self) -> None:
        self._lost(None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lost(exc)

    # --- one exchange --------------------------------------------------------------------------------------

    def send(self, message: bytes, receiver: Receiver) -> asyncio.Future[bool]:
        """Write one request; the future ends with the response (True: the connection went back to the pool). Cancel
        it to give up on the exchange: :meth:`abandon` then closes the connection."""
        assert self._transport is not None and (self._done is None or self._done.done())
        self._receiver, self._buf, self._head = receiver, b"", False
        self._done = asyncio.get_running_loop().create_future()
        if self.closed or self._transport.is_closing():
            self._end(HttpError("truncated", "the connection closed before the request was sent"))
        else:
            self._transport.write(message)
        return self._done

    def abandon(self) -> None:
        """The exchange's owner gave up on it before its end (cancelled): a connection mid-answer cannot be reused."""
        if self._done is None or self._done.cancelled():
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()
            self._pool.lost(self)

    def _end(self, outcome: Optional[BaseException], reusable: bool = False) -> None:
        done, self._receiver = self._done, None
        if reusable:
            self._pool.release(self)
        else:
            self.close()
        if done is not None and not done.done():
            if outcome is None:
                done.set_result(reusable)
            else:
                done.set_exception(outcome)

    def _lost(self, exc: Optional[Exception]) -> None:
        if self._done is not None and not self._done.done():
            if self._head and self._until_close:
                self._end(None)  # the body ran until the close, as its headers said
            else:
                why = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
                self._end(HttpError("truncated", f"the stream was cut: {why}"))
        self.close()

    # --- parsing ---------------------------------------------------------------------------------------------

    def _feed(self, data: bytes, now: int) -> None:
        buf = self._buf + data if self._buf else data
        if not self._head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise HttpError("transport_error", f"no end of the response headers in {len(buf)} bytes")
                self._buf = buf
                return
            self._read_head(buf[:end])
            buf = buf[end + 4:]
        if self._chunked:
            body, buf, finished = self._dechunk(buf)
        elif self._until_close:
            body, buf, finished = buf, b"", False
        else:
            body, buf = buf[:self._left], buf[self._left:]
            self._left -= len(body)
            finished = self._left == 0
        self._buf = buf
        if body:
            assert self._receiver is not None
            self._receiver.body(body, now)
        if finished:
            self._end(None, reusable=self._keep_alive and not buf)

    def _read_head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError("transport_error", f"not an HTTP/1.x response: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        if 100 <= status < 200:
            raise HttpError("transport_error", f"an interim {status} response (never asked for)")
        self._head = True
        self._keep_alive = version != "HTTP/1.0" and "close" not in headers.get("connection", "").lower()
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._until_close = not self._chunked and length is None
        self._left = -1 if self._chunked else int(length or 0)
        if self._until_close:
            self._keep_alive = False
        assert self._receiver is not None
        self._receiver.head(status, headers)

    def _dechunk(self, buf: bytes) -> tuple[bytes, bytes, bool]:
        """``(body bytes, what is left unread, the body ended)``: undo the chunked framing of what arrived."""
        parts, pos, n = [], 0, len(buf)
        while pos < n:
            if self._left > 0:  # inside a chunk
                take = buf[pos:pos + self._left]
                parts.append(take)
                pos += len(take)
                self._left -= len(take)
            elif self._left == 0:  # the CRLF after a chunk
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise HttpError("transport_error", "a chunk of the body does not end with CRLF")
                pos += 2
                self._left = -1
            else:  # a size line (or, after the last chunk, the trailer lines up to an empty one)
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                line, pos = buf[pos:end], end + 2
                if self._left == -2:
                    if not line:
                        return b"".join(parts), buf[pos:], True
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise HttpError("transport_error", f"a bad chunk size line {line[:40]!r}") from None
                self._left = size if size else -2
        return b"".join(parts), buf[pos:], False


class Pool:
    """At most ``limit`` connections to one target; a request waits for one when all are busy."""

    def __init__(self, target: Target, limit: int, connect_timeout_s: float) -> None:
        self.target = target
        self._limit = limit
        self._timeout = connect_timeout_s
        self._conns: set[Connection] = set()  # every open connection, idle or busy
        self._idle: list[Connection] = []
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[Optional[Connection]]] = collections.deque()

    def take_idle(self) -> Optional[Connection]:
        """An open idle connection, if there is one (no waiting)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self) -> Connection:
        """An idle connection, else a new one while under the limit, else the next one released."""
        while True:
            conn = self.take_idle()
            if conn is not None:
                return conn
            if len(self._conns) + self._connecting < self._limit:
                return await self._connect()
            waiter: asyncio.Future[Optional[Connection]] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # handed over just as the wait was cancelled: pass it on
                raise
            if conn is not None and not conn.closed:
                return conn

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        t = self.target
        self._connecting += 1
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: Connection(self), t.host, t.port, ssl=t.ssl, server_hostname=t.host if t.ssl else None), self._timeout)
        except asyncio.TimeoutError:
            raise HttpError("timeout", f"no connection to {t.url} within {self._timeout:g} s") from None
        except OSError as exc:
            raise HttpError("connect_error", f"cannot connect to {t.url}: {exc}") from None
        finally:
            self._connecting -= 1
        if conn.closed:  # closed already (a server that hung up at once): the next try opens another
            self._wake_one(None)
            raise HttpError("truncated", f"{t.url} closed the connection as soon as it opened")
        self._conns.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """A connection free for another request goes to the first waiter, else back to the idle ones."""
        if not conn.closed and not self._wake_one(conn):
            self._idle.append(conn)

    def lost(self, conn: Connection) -> None:
        """A connection closed (either side): its slot is free."""
        if conn in self._conns:
            self._conns.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake_one(None)  # not a connection: room to open one

    def _wake_one(self, conn: Optional[Connection]) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def close(self) -> None:
        """Close every connection, busy or idle."""
        for conn in list(self._conns):
            conn.close()
