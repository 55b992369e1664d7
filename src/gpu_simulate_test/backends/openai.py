"""``backend=openai``: replay a workload against any OpenAI-compatible server (vLLM, SGLang, ``transformers serve``).

The server is a black box measured over HTTP, so this driver loads no model and records no iterations. One asyncio
loop in a background thread runs a pool of at most ``max_connections`` keep-alive connections (:mod:`._http`, a small
HTTP/1.1 client: aiohttp, and httpx before it, cost the loop too much per streamed chunk); ``submit`` only hands the
request to that loop (``call_soon_threadsafe`` wakes it at once), whose callback writes it at once on an idle
connection. Every request streams, asks for ``max_tokens`` = its decode length and, where the server takes them,
``ignore_eos`` and ``min_tokens`` = that length.

- **dispatch**: when the request's bytes were written to its connection (the first byte sent), so a wait for a
  pooled connection counts as lateness; a request that never got a byte out keeps the time it was handed to the loop;
- **token times**: when the bytes that completed each streamed chunk arrived (the stamp taken first thing in the
  connection's read callback), on the run's clock; a chunk's token count comes from the server (:mod:`._sse`), and
  each token of a multi-token chunk gets the chunk's time;
- **failures** (refused connection, timeout, HTTP error, cut or malformed stream) end that request only: it is
  recorded in ``request_outcomes.csv`` with its status and message, and the run goes on.

Before the clock starts, warm-up requests decide how to phrase a request: the prompt as token ids (completions
only) or as text, and with or without the exact-length options; a 4xx answer moves on to the next phrasing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import selectors
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Coroutine, Optional, TypeVar
from urllib.parse import urlsplit

import pandas as pd

from gpu_simulate_test.backends._http import Connection, HttpError, Pool, Target
from gpu_simulate_test.backends._sse import StreamError, StreamReader
from gpu_simulate_test.backends.base import Backend, register_backend
from gpu_simulate_test.backends.recorder import Recorder
from gpu_simulate_test.config.backend import BackendConfig
from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.workload import TokenizerConfig
from gpu_simulate_test.errors import EnvironmentUnavailableError, InputError
from gpu_simulate_test.io.schemas import REQUEST_OUTCOMES, TableSchema
from gpu_simulate_test.io.units import NS_PER_S
from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
SEND_TOKEN_IDS = ("auto", "true", "false")
WARMUP_MAX_TOKENS = 2
MESSAGE_CHARS = 300  # an error message is cut to this many characters in request_outcomes.csv
CLOSE_TIMEOUT_S = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class Phrasing:
    """How a request is put to the server; warm-up keeps the first one the server accepts."""

    token_ids: bool  # the prompt as token ids (else as text)
    exact_length: bool  # with ignore_eos and min_tokens


@dataclass
class Outcome:
    """What happened to one request (a row of ``request_outcomes.csv``); times are raw ``perf_counter_ns``."""

    status: str = "pending"
    message: str = ""
    http_status: Optional[int] = None
    first_byte_ns: Optional[int] = None
    server_prompt_tokens: Optional[int] = None
    chunks: int = 0
    multi_token_chunks: int = 0
    token_times: list[int] = field(default_factory=list)
    last_ns: int = 0  # the last sign of life: handed to the loop, then every read
    timed_out: bool = False  # given up by the watchdog

    def fail(self, status: str, message: str) -> None:
        self.status, self.message = status, " ".join(message.split())[:MESSAGE_CHARS]


def check_server_config(cfg: BackendConfig) -> tuple[str, str]:
    """``(url, send_token_ids)`` of a valid config; else one :class:`InputError` naming the bad value."""
    where = "backend openai"
    if not cfg.base_url:
        raise InputError(f"{where}: base_url is not set; give the server's address, e.g. backend.base_url=http://127.0.0.1:8000")
    try:
        url = urlsplit(str(cfg.base_url))
        url.port  # noqa: B018 - parses the port, raising on a bad one
    except ValueError as exc:
        raise InputError(f"{where}: base_url={cfg.base_url!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InputError(f"{where}: base_url={cfg.base_url!r} is not an http(s)://host[:port] address")
    if cfg.endpoint not in ENDPOINTS:
        raise InputError(f"{where}: endpoint={cfg.endpoint!r}; use one of {sorted(ENDPOINTS)}")
    if not cfg.model_name:
        raise InputError(f"{where}: model_name is not set; give the model as the server names it (GET /v1/models)")
    mode = str(cfg.send_token_ids).lower()
    if mode not in SEND_TOKEN_IDS:
        raise InputError(f"{where}: send_token_ids={cfg.send_token_ids!r}; use one of {list(SEND_TOKEN_IDS)}")
    if mode == "true" and cfg.endpoint == "chat":
        raise InputError(f"{where}: send_token_ids=true needs endpoint=completions (chat messages are text)")
    if cfg.api_key_env and cfg.api_key_env not in os.environ:
        raise InputError(f"{where}: api_key_env={cfg.api_key_env!r}, but that environment variable is not set")
    if cfg.max_connections < 1 or not cfg.timeout_s > 0:
        raise InputError(f"{where}: max_connections={cfg.max_connections} must be >= 1 and timeout_s={cfg.timeout_s} > 0")
    return str(cfg.base_url).rstrip("/") + ENDPOINTS[cfg.endpoint], mode


@register_backend("openai")
class OpenAIServer(Backend):
    """An OpenAI-compatible server reached over HTTP (see the module docstring)."""

    def __init__(self, backend: BackendConfig, model: ModelConfig, hardware: HardwareConfig, seed: int) -> None:
        super().__init__(backend, model, hardware, seed)
        self._url, self._send_token_ids = check_server_config(backend)
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
        if backend.api_key_env:
            self._headers["Authorization"] = f"Bearer {os.environ[backend.api_key_env]}"
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._target = Target(self._url)
        self._pool = Pool(self._target, int(backend.max_connections), float(backend.timeout_s))
        self._phrasing: Optional[Phrasing] = None
        self._prompts: dict[int, list[int]] = {}
        self._texts: dict[int, str] = {}
        self._messages: dict[int, bytes] = {}  # each request's bytes, ready to write
        self._outcomes: dict[int, Outcome] = {}
        self._active: dict[asyncio.Task[None], Outcome] = {}  # the requests in flight
        self._watchdog: Optional[concurrent.futures.Future[None]] = None
        self._peak_in_flight = 0
        self._loop_cpu_s: Optional[float] = None  # CPU time of the client's loop thread over the run
        self._selector = _TimedSelector()

    # --- the loop thread ---------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: Optional[float] = None) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def load(self) -> str:
        """No model: start the client's loop thread."""
        self._loop = asyncio.SelectorEventLoop(self._selector)
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-client", daemon=True)
        self._thread.start()
        return f"server:{self.cfg.model_name}"

    # --- one request ---------------------------------------------------------------------------------------

    def _message(self, request: WorkloadRequest, phrasing: Phrasing, max_tokens: int) -> bytes:
        rid = request.request_id
        prompt: Any = self._prompts[rid] if phrasing.token_ids else self._texts[rid]
        body: dict[str, Any] = {"model": self.cfg.model_name, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        if self.cfg.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if phrasing.exact_length:
            body.update(ignore_eos=True, min_tokens=max_tokens)
        headers = {**self._headers, "X-Request-Id": f"r{rid}"}
        return self._target.post(headers, json.dumps(body, separators=(",", ":")).encode())

    async def _exchange(self, ex: _Exchange, message: bytes, max_tokens: int) -> None:
        """Send one request (unless the dispatching callback already did) and read its stream into ``ex.out``; every
        failure is caught and recorded there."""
        out = ex.out
        try:
            if ex.conn is None:
                ex.send(await self._pool.acquire(), message)
            assert ex.done is not None
            await ex.done
            if out.http_status != 200:
                out.fail("http_error", f"HTTP {out.http_status}: {_error_text(bytes(ex.error_body))}")
                return
            ex.reader.finish()
            out.server_prompt_tokens = ex.reader.prompt_tokens
            got = ex.reader.tokens(max_tokens)
            out.token_times, out.chunks, out.multi_token_chunks = got.times, got.chunks, got.multi_token_chunks
            out.status = "ok"
        except (StreamError, HttpError) as exc:
            out.fail(exc.status, str(exc))
        finally:
            if ex.conn is not None:
                ex.conn.abandon()  # cancelled mid-answer: close it (an answer that ended already put it back or closed it)

    # --- warm-up: how to phrase a request --------------------------------------------------------------

    def _phrasings(self) -> list[Phrasing]:
        ids = {"true": [True], "false": [False], "auto": [True, False]}[self._send_token_ids]
        if self.cfg.endpoint == "chat":
            ids = [False]
        return [Phrasing(t, e) for t in ids for e in (True, False)]

    def _ensure_texts(self, workload: Workload) -> None:
        if not self._texts:
            from gpu_simulate_test.workloads.prompt_text import prompt_texts
            from gpu_simulate_test.workloads.tokenizer import load_tokenizer

            tok = load_tokenizer(TokenizerConfig(), str(self.model_cfg.hf_id), int(self.model_cfg.vocab_size))
            self._texts = prompt_texts(workload, tok)

    def warmup(self, workload: Workload, prompts: dict[int, list[int]]) -> None:
        """Find the phrasing the server takes, open connections, and serialize every request's body."""
        self._prompts = prompts
        first = workload.requests[0]
        tokens = min(WARMUP_MAX_TOKENS, first.num_decode_tokens)
        refused = []
        for phrasing in self._phrasings():
            if not phrasing.token_ids:
                self._ensure_texts(workload)
            out = Outcome()
            self._run(self._exchange_within(self._message(first, phrasing, tokens), tokens, out))
            if out.status == "ok":
                self._phrasing = phrasing
                break
            if out.status != "http_error" or not 400 <= (out.http_status or 0) < 500:
                raise EnvironmentUnavailableError(
                    f"backend openai: the warm-up request to {self._url} failed ({out.status}: {out.message})")
            refused.append(f"{_describe(phrasing)}: {out.message}")
        else:
            raise EnvironmentUnavailableError(
                f"backend openai: {self._url} refused every phrasing of a request: {'; '.join(refused)}")
        more = max(int(self.cfg.warmup_requests) - 1, 0)
        if more:
            self._run(self._warm_connections(first, tokens, more))
        self._messages = {r.request_id: self._message(r, self._phrasing, r.num_decode_tokens) for r in workload.requests}

    async def _exchange_within(self, message: bytes, max_tokens: int, out: Outcome) -> None:
        """A warm-up exchange, given up after ``timeout_s`` in all (the watchdog covers only the run)."""
        try:
            await asyncio.wait_for(self._exchange(_Exchange(out), message, max_tokens), float(self.cfg.timeout_s))
        except asyncio.TimeoutError:
            out.fail("timeout", f"no answer within timeout_s={self.cfg.timeout_s}")

    async def _warm_connections(self, request: WorkloadRequest, tokens: int, n: int) -> None:
        """``n`` requests at once, so the pool holds that many open connections when the clock starts."""
        assert self._phrasing is not None
        outs = [Outcome() for _ in range(n)]
        message = self._message(request, self._phrasing, tokens)
        await asyncio.gather(*(self._exchange_within(message, tokens, o) for o in outs))
        bad = next((o for o in outs if o.status != "ok"), None)
        if bad is not None:
            raise EnvironmentUnavailableError(f"backend openai: a warm-up request to {self._url} failed ({bad.status}: {bad.message})")

    # --- the run ----------------------------------------------------------------------------------------

    def start(self, recorder: Recorder) -> None:
        super().start(recorder)
        self._loop_cpu_s = -self._run(_thread_cpu())
        self._selector.busy = LoopBusy()
        assert self._loop is not None
        self._watchdog = asyncio.run_coroutine_threadsafe(self._watch(), self._loop)

    async def _watch(self) -> None:
        """Give up on a request whose server has said nothing for ``timeout_s`` (checked 4 times per timeout, at least
        once a second): one sweep instead of a timer re-armed on every read, which cost ~12% of the client's time."""
        limit = int(float(self.cfg.timeout_s) * NS_PER_S)
        while True:
            await asyncio.sleep(min(1.0, float(self.cfg.timeout_s) / 4))
            now = time.perf_counter_ns()
            for task, out in self._active.items():
                if now - out.last_ns > limit and not out.timed_out:
                    out.timed_out = True
                    task.cancel()

    def _end_run(self) -> None:
        """The run is over: stop the watchdog, take the loop's CPU time, and put every first byte on the record."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._loop_cpu_s is not None and self._loop_cpu_s <= 0:
            self._loop_cpu_s += self._run(_thread_cpu())
        self._publish()

    def submit(self, request: WorkloadRequest, prompt: list[int]) -> int:
        assert self.recorder is not None and self._loop is not None
        dispatched = self.recorder.clock.now()
        self._loop.call_soon_threadsafe(self._launch, request)
        return dispatched  # provisional: replaced by the first byte's time once the run is over (_publish)

    def _launch(self, request: WorkloadRequest) -> None:
        """In the loop: write the request now on an idle connection (a task would send it a loop turn later, after
        the reads of that turn), then leave the rest of the exchange to a task."""
        assert self._loop is not None
        out = self._outcomes[request.request_id] = Outcome(last_ns=time.perf_counter_ns())
        ex = _Exchange(out)
        conn = self._pool.take_idle()
        if conn is not None:
            ex.send(conn, self._messages[request.request_id])
        task = self._loop.create_task(self._request(request, ex))
        self._active[task] = out
        task.add_done_callback(self._active.pop)
        self._peak_in_flight = max(self._peak_in_flight, len(self._active))

    async def _request(self, request: WorkloadRequest, ex: _Exchange) -> None:
        assert self.recorder is not None
        rid, out = request.request_id, ex.out
        try:
            await self._exchange(ex, self._messages[rid], request.num_decode_tokens)
        except asyncio.CancelledError:  # by the watchdog, or by stop()
            if out.timed_out:
                out.fail("timeout", f"the server said nothing for timeout_s={self.cfg.timeout_s}")
            else:
                out.fail("cancelled", "the run stopped before the request finished")
        if out.status == "ok":
            self.recorder.finish(rid, [self.recorder.clock.rel(t) for t in out.token_times])
        else:
            self.recorder.fail(rid, out.status)

    async def _drain(self, cancel: bool) -> None:
        """Wait for every launched request (``cancel``: stop them first); a request task that crashed re-raises here."""
        while self._active:
            if cancel:
                for task in self._active:
                    task.cancel()
            results = await asyncio.gather(*list(self._active), return_exceptions=True)
            crashed = [r for r in results if isinstance(r, Exception)]
            if crashed and not cancel:
                raise crashed[0]

    def _publish(self) -> None:
        """Each request's dispatch time becomes the time its first byte was sent."""
        assert self.recorder is not None
        for rid, out in self._outcomes.items():
            if out.first_byte_ns is not None:
                self.recorder.dispatch(rid, self.recorder.clock.rel(out.first_byte_ns))

    def wait_all(self) -> None:
        self._run(self._drain(cancel=False))
        self._end_run()

    def stop(self) -> None:
        if self._loop is None or self.recorder is None:
            return
        self._run(self._drain(cancel=True), timeout=CLOSE_TIMEOUT_S)
        self._end_run()

    def close(self) -> None:
        if self._loop is None:
            return
        if self._loop.is_running():
            self._run(self._close_pool(), timeout=CLOSE_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S)
        self._loop.close()
        self._loop = None

    async def _close_pool(self) -> None:
        self._pool.close()
        await asyncio.sleep(0)  # the transports close on the next loop turn

    # --- what the run reports -----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self._url,
            "model_name": self.cfg.model_name,
            "endpoint": self.cfg.endpoint,
            "send_token_ids": self._send_token_ids,
            "prompt_as": None if self._phrasing is None else ("token_ids" if self._phrasing.token_ids else "text"),
            "exact_length": None if self._phrasing is None else self._phrasing.exact_length,
            "api_key_env": self.cfg.api_key_env,
            "max_connections": int(self.cfg.max_connections),
            "timeout_s": float(self.cfg.timeout_s),
            "warmup_requests": int(self.cfg.warmup_requests),
            "http_client": "gpu_simulate_test.backends._http (asyncio protocol, HTTP/1.1 keep-alive)",
            "token_time_source": "arrival of the bytes completing each streamed chunk (time.perf_counter_ns at the read)",
            "limits_mirrored_by_vidur": None if self._limits is None else asdict(self._limits),
        }

    def run_stats(self) -> dict[str, Any]:
        outs = list(self._outcomes.values())
        ok = [o for o in outs if o.status == "ok"]
        return {"stream": {
            "requests_ok": len(ok),
            "requests_failed": len(outs) - len(ok),
            "tokens": sum(len(o.token_times) for o in ok),
            "chunks": sum(o.chunks for o in ok),
            "multi_token_chunks": sum(o.multi_token_chunks for o in ok),
            "peak_in_flight": self._peak_in_flight,
            "max_connections": int(self.cfg.max_connections),
            "pool_exceeded": self._peak_in_flight > int(self.cfg.max_connections),  # some requests waited for a connection
            "client_loop_cpu_s": self._loop_cpu_s,  # near run_s: the client was the bottleneck (see specs/backends.md)
            "client_loop_busy": asdict(self._selector.busy),  # its longest stretches away from the socket
        }}

    def run_tables(self) -> list[tuple[TableSchema, pd.DataFrame]]:
        rows = [{
            "request_id": rid, "status": o.status, "message": o.message or None, "http_status": o.http_status,
            "first_byte_ns": None if o.first_byte_ns is None or self.recorder is None else self.recorder.clock.rel(o.first_byte_ns),
            "server_prompt_tokens": o.server_prompt_tokens, "chunks": o.chunks, "multi_token_chunks": o.multi_token_chunks,
            "tokens": len(o.token_times),
        } for rid, o in sorted(self._outcomes.items())]
        return [(REQUEST_OUTCOMES, pd.DataFrame(rows, columns=REQUEST_OUTCOMES.column_names))]


@dataclass
class LoopBusy:
    """The client loop's stretches of work between two polls of its sockets. While one lasts, a chunk that arrives
    waits to be stamped and a request handed over waits to be sent, whatever the cause: the client's own work, a
    garbage collection, the GIL held by another thread, or the OS running something else."""

    stretches: int = 0
    total_s: float = 0.0
    max_ms: float = 0.0
    over_1ms: int = 0
    over_5ms: int = 0

    def add(self, ns: int) -> None:
        self.stretches += 1
        self.total_s += ns / NS_PER_S
        self.max_ms = max(self.max_ms, ns / 1e6)
        self.over_1ms += ns > 1_000_000
        self.over_5ms += ns > 5_000_000


class _TimedSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]  # an alias of the platform's best
    """The loop's selector, timing each stretch from one poll's return to the next poll (:class:`LoopBusy`)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = LoopBusy()
        self._returned_ns = 0

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._returned_ns:
            self.busy.add(time.perf_counter_ns() - self._returned_ns)
        events = super().select(timeout)
        self._returned_ns = time.perf_counter_ns()
        return events


class _Exchange:
    """One request on one connection: the receiver its answer streams into (:class:`._http.Receiver`)."""

    def __init__(self, out: Outcome) -> None:
        self.out = out
        self.reader = StreamReader()
        self.error_body = bytearray()  # the body of an answer other than 200
        self.conn: Optional[Connection] = None
        self.done: Optional[asyncio.Future[bool]] = None

    def send(self, conn: Connection, message: bytes) -> None:
        self.conn = conn
        self.done = conn.send(message, self)
        if not self.done.done():
            self.out.first_byte_ns = time.perf_counter_ns()

    def head(self, status: int, headers: dict[str, str]) -> None:
        self.out.http_status, self.out.last_ns = status, time.perf_counter_ns()
        if status == 200 and "text/event-stream" not in headers.get("content-type", ""):
            raise StreamError("bad_stream", f"the server answered {headers.get('content-type')!r}, not a stream")

    def body(self, data: bytes, time_ns: int) -> None:
        self.out.last_ns = time_ns
        if self.out.http_status == 200:
            self.reader.feed(data, time_ns)
        else:
            self.error_body += data


async def _thread_cpu() -> float:
    """CPU seconds of the thread running the loop (this coroutine runs there)."""
    return time.thread_time()


def _describe(p: Phrasing) -> str:
    return f"prompt as {'token ids' if p.token_ids else 'text'}{' with ignore_eos/min_tokens' if p.exact_length else ''}"


def _error_text(body: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``, or FastAPI's ``detail``)."""
    text = body.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)
    return text
