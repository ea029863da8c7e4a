"""A local stand-in for Anthropic's Messages API, speaking its streaming wire format.

Point the real ``anthropic`` SDK at it (``base_url=srv.base_url`` or ``ANTHROPIC_BASE_URL``)
from this process or any other: it is a real TCP server on 127.0.0.1, run by a background
thread with its own asyncio loop, and it speaks HTTP/1.1 (keep-alive, chunked responses)
written by hand on asyncio streams.

Each ``POST /v1/messages`` plays a *script*: a list of steps. ``srv.enqueue(script)`` queues
one for the next request; with the queue empty the default script (a short text reply)
plays. Build scripts with the helpers below::

    with FakeAnthropicServer() as srv:
        srv.enqueue(text_reply(["Hel", "lo"], input_tokens=5, output_tokens=2))
        srv.enqueue(message(
            [thinking(["hmm"]), text(["ok"]), tool_use("toolu_1", "f", ['{"a"', ":1}"])],
            stop_reason="tool_use",
        ))
        srv.enqueue([http_error(429)])
        srv.enqueue(text_reply(["slow"] * 10, chunk_delay=0.2))
        srv.enqueue(text_reply(["a"])[:3] + [stall()])
        srv.will_continue("The whole answer it means")  # asked to go on (fake_continue)

Every request is recorded (``srv.requests``: ``(headers, body)`` pairs, headers with
lower-case names), and so is a client that goes away before its script has finished
(``srv.wait_client_closed(i, timeout)``), which is how tests prove that cancelling a
generation closes the request to the model.

With a prompt cache (``FakeAnthropicServer(cache=AnthropicCache())``,
``tests/support/prompt_cache.py``) each request is billed as the API bills it, by its
``cache_control`` breakpoints and what earlier requests wrote: the usage of the message
it plays says so (``input_tokens``, ``cache_read_input_tokens``,
``cache_creation_input_tokens``, in place of the script's), and ``exchange.bill`` keeps it.

Like the real API, it refuses (400 ``invalid_request_error``) a request whose turns
(consecutive messages of one role merged into one, as the API merges them) do not hold
together: a thinking block whose signature it did not issue for that very thinking (or
redacted thinking whose data it did not send), a ``tool_result`` that answers no
``tool_use`` of the assistant turn just before, a ``tool_use`` left unanswered by the next
turn, an empty text block, a ``thinking.budget_tokens`` under 1024 or not under
``max_tokens``, a ``temperature`` outside 0..1, and more than four ``cache_control``
breakpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any

from tests.support.anthropic_scripts import (
    DEFAULT_MODEL,
    Block,
    Delay,
    Drop,
    Frame,
    Gate,
    HttpError,
    Script,
    Stall,
    Step,
    cited_text,
    default_reply,
    delay,
    drop,
    error_body,
    frame,
    gate,
    http_error,
    message,
    ping,
    redacted_thinking,
    server_tool_use,
    sse_error,
    stall,
    text,
    text_block,
    text_reply,
    thinking,
    thinking_block,
    tool_use,
    tool_use_block,
)
from tests.support.anthropic_wire import (
    _REASONS,
    Exchange,
    RecordedRequest,
    _ClientGone,
    _Conn,
    _options_problem,
    turns_problem,
)
from tests.support.fake_continue import Answer, continuation_chunks, partial_answer
from tests.support.prompt_cache import (
    MAX_BREAKPOINTS,
    AnthropicCache,
    Bill,
    anthropic_usage,
    breakpoints,
)

__all__ = [
    "Block",
    "Delay",
    "Drop",
    "Exchange",
    "FakeAnthropicServer",
    "Frame",
    "Gate",
    "HttpError",
    "RecordedRequest",
    "Script",
    "Stall",
    "Step",
    "cited_text",
    "delay",
    "drop",
    "frame",
    "gate",
    "http_error",
    "message",
    "ping",
    "redacted_thinking",
    "server_tool_use",
    "sse_error",
    "stall",
    "text",
    "text_block",
    "text_reply",
    "thinking",
    "thinking_block",
    "tool_use",
    "tool_use_block",
]


def _checked(script: Script) -> Script:
    steps = list(script)
    for i, step in enumerate(steps):
        if isinstance(step, HttpError) and i != 0:
            raise ValueError("http_error() can only be a script's first step")
        if not isinstance(step, Frame | Delay | Stall | Gate | HttpError | Drop):
            raise TypeError(f"not a script step: {step!r}")
    return steps


def _sse(step: Frame) -> bytes:
    return f"event: {step.event}\ndata: {json.dumps(step.data, separators=(',', ':'))}\n\n".encode()


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


# --------------------------------------------------------------------------------------------
# The server


class FakeAnthropicServer:
    """``with FakeAnthropicServer() as srv:`` — see the module docstring.

    ``api_key``: when given, requests must carry it (``x-api-key`` or ``authorization:
    Bearer``), else 401; when None, any key is accepted but one must be present.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default_script: Script | None = None,
        port: int = 0,
        cache: AnthropicCache | None = None,
    ) -> None:
        self.api_key = api_key
        self.cache: Any = cache
        """The prompt cache that bills each request (None: the scripts' usage as written)."""
        self._bind_port = port  # fixed: a server started again answers at the same address
        self.errors: list[BaseException] = []
        """Unexpected exceptions in connection handlers (a bug in the fake, if any)."""
        self._default: Script = _checked(
            default_script if default_script is not None else default_reply()
        )
        self._scripts: deque[Script] = deque()
        self._routes: dict[str, deque[Script]] = {}
        self._exchanges: list[Exchange] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._port = 0
        self._ids = itertools.count(1)
        self._conns = itertools.count(1)
        self.issued_signatures: dict[str, set[str]] = {}
        """Each signature sent, with the thinking texts it was sent for."""
        self.issued_redacted: set[str] = set()
        self._answers: list[Answer] = []

    # ---- lifecycle

    def start(self) -> FakeAnthropicServer:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="fake-anthropic", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._start_error is not None:
            self._thread.join(5)
            raise RuntimeError("fake Anthropic server failed to start") from self._start_error
        if not self._port:
            raise RuntimeError("fake Anthropic server did not start in time")
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        if thread.is_alive():
            raise RuntimeError("fake Anthropic server thread did not stop")
        self._thread = None
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ---- scripting

    def enqueue(self, script: Script) -> None:
        """Play ``script`` for the next request that has no script yet (FIFO)."""
        steps = _checked(script)
        with self._cond:
            self._scripts.append(steps)

    def route(self, marker: str, *scripts: Script) -> None:
        """Play ``scripts``, in order, for requests whose last message contains ``marker``,
        before the FIFO queue: concurrent clients get their own scripts whatever the order
        in which their requests arrive."""
        steps = [_checked(script) for script in scripts]
        with self._cond:
            self._routes.setdefault(marker, deque()).extend(steps)

    def will_continue(
        self, answer: str, *, repeat_words: int = 3, chunk_delay: float = 0.0
    ) -> None:
        """Asked to go on from a partial answer that ``answer`` starts with (the synthetic
        continue turn after it), answer with the rest of it, first repeating the partial's
        last ``repeat_words`` words (``fake_continue``); before any routed or queued
        script."""
        with self._cond:
            self._answers.append(Answer(answer, repeat_words, chunk_delay))

    def _continuation(self, body: Any) -> Script | None:
        partial = partial_answer(body)
        if partial is None:
            return None
        for answer in self._answers:
            chunks = continuation_chunks(partial, answer)
            if chunks is not None:
                return text_reply(chunks, chunk_delay=answer.chunk_delay)
        return None

    def _next_script(self, body: Any) -> Script:
        """(Under ``_cond``.) A continuation of a registered answer, else the routed script
        for this request, else the queue's next, else the default."""
        going_on = self._continuation(body)
        if going_on is not None:
            return going_on
        last = str(body.get("messages", [""])[-1]) if isinstance(body, dict) else ""
        for marker, queue in self._routes.items():
            if queue and marker in last:
                return queue.popleft()
        return self._scripts.popleft() if self._scripts else list(self._default)

    def set_default(self, script: Script) -> None:
        """The script played when the queue is empty."""
        steps = _checked(script)
        with self._cond:
            self._default = steps

    @property
    def pending_scripts(self) -> int:
        with self._cond:
            return len(self._scripts)

    # ---- records

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, as ``(headers, body)``."""
        with self._cond:
            return [RecordedRequest(e.headers, e.body) for e in self._exchanges]

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request so far, with method, path, timings and how its script ended."""
        with self._cond:
            return list(self._exchanges)

    @property
    def request_count(self) -> int:
        with self._cond:
            return len(self._exchanges)

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._exchanges) >= n, timeout)

    def wait_client_closed(self, index: int, timeout: float = 5.0) -> bool:
        """Wait until the client of request ``index`` has gone before its script ended."""

        def closed() -> bool:
            return index < len(self._exchanges) and self._exchanges[index].client_closed

        with self._cond:
            return self._cond.wait_for(closed, timeout)

    def wait_completed(self, index: int, timeout: float = 5.0) -> bool:
        """Wait until request ``index``'s script has played to its end."""

        def done() -> bool:
            return index < len(self._exchanges) and self._exchanges[index].completed

        with self._cond:
            return self._cond.wait_for(done, timeout)

    def client_closed(self, index: int) -> bool:
        with self._cond:
            return self._exchanges[index].client_closed

    # ---- the loop thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._start_error = self._start_error or exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task[Any]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve_connection(_Conn(next(self._conns), reader, writer))
            except (asyncio.CancelledError, _ClientGone, ConnectionError, ValueError):
                pass  # stopping, or a client that left or spoke bad HTTP: drop the connection
            except Exception as exc:  # a bug in the fake: keep it for the test to see
                self.errors.append(exc)
            finally:
                tasks.discard(task)
                writer.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await writer.wait_closed()

        try:
            server = await asyncio.start_server(handle, "127.0.0.1", self._bind_port)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            raise
        async with server:
            self._port = server.sockets[0].getsockname()[1]
            self._started.set()
            await self._stopping.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve_connection(self, conn: _Conn) -> None:
        while True:
            request_line = await conn.readline()
            if request_line is None:
                return
            if not request_line.strip():
                continue  # tolerate stray CRLFs between requests
            parts = request_line.decode("latin-1").split()
            if len(parts) != 3:
                raise ValueError("bad request line")
            method, target, version = parts
            headers: dict[str, str] = {}
            while True:
                line = await conn.readline()
                if line is None:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, sep, value = line.decode("latin-1").partition(":")
                if not sep:
                    raise ValueError("bad header line")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            raw_body = await self._read_body(conn, headers)
            keep_alive = (
                version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
            )
            await self._answer(
                conn,
                method=method,
                target=target,
                headers=headers,
                raw_body=raw_body,
                keep_alive=keep_alive,
            )
            if not keep_alive or conn.writer.is_closing():
                return

    @staticmethod
    async def _read_body(conn: _Conn, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = await conn.readline()
                if size_line is None:
                    raise ValueError("body cut short")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (trailer := await conn.readline()) not in (b"\r\n", b"\n"):
                        if trailer is None:
                            raise ValueError("body cut short")
                    return bytes(body)
                body += await conn.readexactly(size)
                await conn.readexactly(2)
        length = int(headers.get("content-length", "0") or "0")
        return await conn.readexactly(length) if length else b""

    async def _answer(
        self,
        conn: _Conn,
        *,
        method: str,
        target: str,
        headers: dict[str, str],
        raw_body: bytes,
        keep_alive: bool,
    ) -> None:
        path = target.split("?", 1)[0]
        exchange = self._record(conn, method, path, headers, raw_body)
        body = exchange.body
        error = self._refusal(method, path, headers, body)
        if error is None:
            with self._cond:
                script = self._next_script(body)
            if script and isinstance(script[0], HttpError):
                error = script[0]
            else:
                await self._play(conn, exchange, script, keep_alive)
                return
        await self._send_json(conn, error, keep_alive)
        self._finish(exchange)

    def _record(
        self, conn: _Conn, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> Exchange:
        """Keep the request (its body parsed, if JSON) for the test to see."""
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        with self._cond:
            exchange = Exchange(len(self._exchanges), conn.number, method, path, headers, body)
            self._exchanges.append(exchange)
            self._cond.notify_all()
        return exchange

    def _refusal(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> HttpError | None:
        """The error answer a request gets before its script is consulted, if any."""

        def simple(status: int, error_type: str, msg: str) -> HttpError:
            return HttpError(status, error_body(error_type, msg), {})

        if path.rstrip("/") != "/v1/messages":
            return simple(404, "not_found_error", f"no route {path}")
        if method != "POST":
            return simple(405, "invalid_request_error", "use POST")
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key or (self.api_key is not None and key != self.api_key):
            return simple(401, "authentication_error", "invalid x-api-key")
        if not isinstance(body, dict) or body.get("stream") is not True:
            return simple(400, "invalid_request_error", "the fake only answers stream: true")
        marks = len(breakpoints(body))
        if marks > MAX_BREAKPOINTS:
            return simple(
                400,
                "invalid_request_error",
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {marks}.",
            )
        with self._cond:
            problem = _options_problem(body) or self._turns_problem(body.get("messages"))
        return None if problem is None else simple(400, "invalid_request_error", problem)

    def _turns_problem(self, messages: Any) -> str | None:
        """(Under ``_cond``.) What the API would say of these turns, if anything."""
        return turns_problem(messages, self.issued_signatures, self.issued_redacted)

    def _finish(self, exchange: Exchange) -> None:
        with self._cond:
            exchange.completed_at = time.monotonic()
            self._cond.notify_all()

    def _client_left(self, exchange: Exchange) -> None:
        with self._cond:
            if exchange.completed_at is None and exchange.client_closed_at is None:
                exchange.client_closed_at = time.monotonic()
            self._cond.notify_all()

    @staticmethod
    async def _send_json(conn: _Conn, error: HttpError, keep_alive: bool) -> None:
        payload = json.dumps(error.body).encode()
        head = [
            f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in error.headers.items()),
        ]
        await conn.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)

    async def _play(
        self, conn: _Conn, exchange: Exchange, script: Script, keep_alive: bool
    ) -> None:
        # Watch for the client going away (EOF) while the script plays: httpx never pipelines,
        # so anything it sends meanwhile belongs to the next request and stays in conn.buf.
        gone = asyncio.Event()

        async def watch() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while await conn._fill():
                    pass
            gone.set()

        watcher = asyncio.create_task(watch())
        thinking: dict[Any, str] = {}  # each thinking block's text so far, by index
        request_id = f"req_fake_{next(self._ids):04d}"
        model = exchange.body.get("model") if isinstance(exchange.body, dict) else None
        with self._cond:
            exchange.bill = self._bill(exchange.body)
        headers_sent = False

        async def send_headers() -> None:
            nonlocal headers_sent
            if headers_sent:
                return
            headers_sent = True
            head = [
                "HTTP/1.1 200 OK",
                "content-type: text/event-stream; charset=utf-8",
                "cache-control: no-cache",
                "transfer-encoding: chunked",
                f"request-id: {request_id}",
                f"connection: {'keep-alive' if keep_alive else 'close'}",
            ]
            await conn.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

        async def wait_gone(seconds: float | None) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), seconds)
            if gone.is_set():
                raise _ClientGone

        try:
            for step in script:
                if gone.is_set():
                    raise _ClientGone
                if isinstance(step, Frame):
                    await send_headers()
                    filled = self._fill_in(step, model, request_id, exchange.bill)
                    self._issue(filled, thinking)
                    await conn.write(_chunk(self._frame_bytes(filled)))
                    exchange.frames_sent += 1
                    exchange.deltas_sent += filled.event == "content_block_delta"
                elif isinstance(step, Delay):
                    if step.send_headers:
                        await send_headers()
                    await wait_gone(step.seconds)
                elif isinstance(step, Stall):
                    if step.send_headers:
                        await send_headers()
                    await wait_gone(None)
                elif isinstance(step, Gate):
                    await send_headers()
                    while not step.opened.is_set():
                        await wait_gone(0.02)
                elif isinstance(step, Drop):
                    conn.writer.transport.abort()
                    self._finish(exchange)
                    return
                else:
                    raise ValueError(f"{step!r} cannot come after the stream began")
            await send_headers()
            await conn.write(b"0\r\n\r\n")
            self._finish(exchange)
        except _ClientGone:
            self._client_left(exchange)
            conn.writer.close()
        finally:
            if watcher.done():  # the client has gone: nothing more to serve on this connection
                conn.writer.close()
            else:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    def _issue(self, step: Frame, thinking: dict[Any, str]) -> None:
        """Remember the signatures and redacted data sent, to accept them back."""
        data = step.data
        index = data.get("index")
        if step.event == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "thinking":
                thinking[index] = ""
            elif block.get("type") == "redacted_thinking":
                with self._cond:
                    self.issued_redacted.add(block.get("data"))
        elif step.event == "content_block_delta" and index in thinking:
            delta = data.get("delta") or {}
            if delta.get("type") == "thinking_delta":
                thinking[index] += delta.get("thinking", "")
            elif delta.get("type") == "signature_delta":
                with self._cond:
                    self.issued_signatures.setdefault(delta["signature"], set()).add(
                        thinking[index]
                    )

    @staticmethod
    def _frame_bytes(step: Frame) -> bytes:
        return _sse(step)

    def _bill(self, body: Any) -> Bill | None:
        """(Under ``_cond``.) What the prompt cache bills for this request, if there is one."""
        return self.cache.bill(body) if self.cache is not None and isinstance(body, dict) else None

    @staticmethod
    def _fill_in(step: Frame, model: Any, request_id: str, bill: Bill | None) -> Frame:
        if step.event == "message_delta" and bill is not None:
            return Frame(
                step.event, {**step.data, "usage": anthropic_usage(step.data.get("usage"), bill)}
            )
        if step.event != "message_start":
            return step
        msg = dict(step.data.get("message") or {})
        if msg.get("model") is None:
            msg["model"] = model if isinstance(model, str) else DEFAULT_MODEL
        if msg.get("id") is None:
            msg["id"] = "msg_" + request_id.removeprefix("req_")
        if bill is not None:
            msg["usage"] = anthropic_usage(msg.get("usage"), bill)
        return Frame(step.event, {**step.data, "message": msg})
