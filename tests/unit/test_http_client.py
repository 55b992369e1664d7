"""The openai backend's HTTP/1.1 client (backends/_http.py): response framing fed in every split, what a connection
tells the pool about reuse, the failures it names, and a pool that makes a request wait for a connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Optional

import pytest

from gpu_simulate_test.backends._http import Connection, HttpError, Pool, Target

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED = HEAD + b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"


class Sink:
    """A receiver that keeps what it was given."""

    def __init__(self) -> None:
        self.status: Optional[int] = None
        self.headers: dict[str, str] = {}
        self.reads: list[tuple[bytes, int]] = []

    def head(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    def body(self, data: bytes, time_ns: int) -> None:
        self.reads.append((data, time_ns))

    @property
    def data(self) -> bytes:
        return b"".join(d for d, _ in self.reads)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def _exchange(parts: list[bytes], eof: bool = False) -> tuple[Sink, "asyncio.Future[bool]", Connection, FakeTransport]:
    """Send a request on a connection over a fake transport and feed it ``parts`` (then the server's close)."""
    pool = Pool(Target("http://127.0.0.1:9/v1/completions"), 1, 1.0)
    conn, transport, sink = Connection(pool), FakeTransport(), Sink()
    conn.connection_made(transport)
    done = conn.send(b"POST ...", sink)
    for part in parts:
        conn.data_received(part)
    if eof:
        conn.eof_received()
    return sink, done, conn, transport


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_chunked_body_is_undone_however_the_reads_split_it() -> None:
    async def go() -> None:
        for cut in range(1, len(CHUNKED)):
            sink, done, conn, transport = _exchange([CHUNKED[:cut], CHUNKED[cut:]])
            assert sink.status == 200 and sink.headers["content-type"] == "text/event-stream"
            assert sink.data == b"hello, world", cut
            assert done.done() and done.result() is True and not conn.closed, cut  # the connection can take another
            assert transport.written == b"POST ..."

    _run(go())


def test_each_read_is_stamped_once_and_in_order() -> None:
    async def go() -> None:
        sink, done, _, _ = _exchange([HEAD + b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"])
        assert [d for d, _ in sink.reads] == [b"abc", b"de"] and done.result() is True
        times = [t for _, t in sink.reads]
        assert times == sorted(times) and times[0] < times[1]

    _run(go())


def test_content_length_and_read_until_close_bodies() -> None:
    async def go() -> None:
        sink, done, _, _ = _exchange([b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nno", b"pe"])
        assert (sink.status, sink.data, done.result()) == (404, b"nope", True)
        sink, done, conn, _ = _exchange([b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n"], eof=True)
        assert sink.data == b"data: x\n\n" and done.result() is False and conn.closed  # the body ended with the connection
        sink, done, conn, _ = _exchange([HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + b"0\r\n\r\n"])
        assert done.result() is False and conn.closed

    _run(go())


@pytest.mark.parametrize("parts, eof, status, fragment", [
    ([HEAD + b"zz\r\n"], False, "transport_error", "bad chunk size"),
    ([HEAD + b"3\r\nabcXY"], False, "transport_error", "does not end with CRLF"),
    ([b"SSH-2.0-OpenSSH\r\n\r\n"], False, "transport_error", "not an HTTP/1.x response"),
    ([HEAD + b"5\r\nhel"], True, "truncated", "the stream was cut"),
    ([], True, "truncated", "the server closed the connection"),
])
def test_broken_answers_name_what_went_wrong(parts: list[bytes], eof: bool, status: str, fragment: str) -> None:
    async def go() -> None:
        _, done, conn, _ = _exchange(parts, eof)
        with pytest.raises(HttpError, match=fragment) as err:
            done.result()
        assert err.value.status == status and conn.closed

    _run(go())


def test_the_request_bytes() -> None:
    target = Target("http://example.org:8080/prefix/v1/completions")
    raw = target.post({"Content-Type": "application/json", "X-Request-Id": "r1"}, b'{"a":1}')
    assert raw == (b"POST /prefix/v1/completions HTTP/1.1\r\nHost: example.org:8080\r\nContent-Type: application/json\r\n"
                   b"X-Request-Id: r1\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    assert b"Host: example.org\r\n" in Target("https://example.org/v1/completions").post({}, b"")


def test_a_full_pool_makes_a_request_wait_and_a_dead_port_is_a_connect_error() -> None:
    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):  # requests without a body
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(Target(f"http://127.0.0.1:{port}/v1/completions"), 1, 5.0)
        first = await pool.acquire()
        second = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.05)
        assert not second.done()  # the only connection is busy
        sink = Sink()
        assert await first.send(Target(f"http://127.0.0.1:{port}/").post({}, b""), sink) is True and sink.data == b"ok"
        assert await asyncio.wait_for(second, 1.0) is first  # handed over as its answer ended, not a new connection
        pool.close()
        server.close()
        await server.wait_closed()

        with socket.socket() as s:  # a port with nobody listening
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        with pytest.raises(HttpError, match="cannot connect to") as err:
            await Pool(Target(f"http://127.0.0.1:{dead}/v1/completions"), 1, 5.0).acquire()
        assert err.value.status == "connect_error"

    _run(go())
