"""Running the front-end under uvicorn, with a shutdown that does not hang.

uvicorn waits for open responses to finish before it runs the lifespan shutdown, and SSE
responses never finish by themselves: left alone, SIGTERM would hang until a timeout and
then cut connections without running their cleanup. So the signal first *drains* the hub
(every open SSE response ends cleanly; clients reconnect elsewhere with Last-Event-ID),
then uvicorn's own shutdown proceeds, bounded by ``shutdown_seconds``.

The event loop is uvloop and the HTTP parser httptools (both come with
``uvicorn[standard]``), named explicitly so a missing one fails at start rather than
silently falling back to the slower pure-Python pair. The HTTP protocol is uvicorn's
httptools protocol plus one ASGI scope extension (``sse_response.DIRECT_WRITE``): a
started, chunked response may write body chunks straight to its socket. That is what
lets the hub's reader copy a live event to every caught-up viewer without waking one
task per viewer (see ``hub.py``); and ``sse_response.DETACH``: a response may go on after
its task has ended, so that a caught-up viewer holds no task at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from broadcaster.core.rlimit import raise_nofile_limit
from broadcaster.fanout.subscription import Writer
from broadcaster.http.gcfreeze import Freezer
from broadcaster.http.sse_response import (
    DETACH,
    DIRECT_WRITE,
    DIRECT_WRITE_LIMIT,
    HOLD_WRITES,
    ON_DISCONNECT,
)

log = logging.getLogger("broadcaster.server")


_ended_early: list[int] = []
"""SIGTERMs received before uvicorn took over the signals (``exit_on_sigterm``)."""


def exit_on_sigterm() -> None:
    """uvicorn re-raises a captured SIGTERM once it has shut down; with Python's default
    disposition that kills the process before ``finally`` blocks run (and the embedded
    Redis would be left behind). Turn it into SystemExit instead.

    A SIGTERM during start-up raises that SystemExit wherever the process is; inside a
    weakref callback or a ``__del__`` Python only prints it ("Exception ignored in") and
    goes on. So the signal is also written down, and a server that starts after one
    stops at once (``DrainingServer.startup``) instead of serving until a SIGKILL."""

    def _exit(signum: int, frame: object) -> None:
        _ended_early.append(signum)
        raise SystemExit(0)  # a drained shutdown is a clean exit

    signal.signal(signal.SIGTERM, _exit)


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        on_exit: Callable[[], None],
        reuse_port: bool = False,
        freezer: Callable[[], Freezer] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._reuse_port = reuse_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._make_freezer = freezer
        self._freezer: Freezer | None = None
        self._thawing: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if sockets is None and self._reuse_port:
            sockets = [_reuse_port_socket(self.config.host, self.config.port)]
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if _ended_early:  # a SIGTERM came before uvicorn's handlers, and was swallowed
            self.handle_exit(signal.SIGTERM, None)
        # What start-up built (modules, the app, its schema: ~75,000 objects) lives as
        # long as the process. Frozen, it is out of the collector's sight: a full
        # collection no longer stalls the event loop (every viewer's next frame) for
        # the ~30 ms it took to scan it (docs/performance.md). With the freezer, so are
        # the open viewers' objects, frozen after each full collection (gcfreeze.py).
        gc.collect()
        if self._make_freezer is None:
            gc.freeze()
            return
        self._freezer = self._make_freezer().__enter__()
        self._thawing = asyncio.create_task(self._freezer.run(), name="gc-thaw")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._thawing is not None:
            self._thawing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._thawing
        if self._freezer is not None:
            self._freezer.__exit__()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called from a signal handler: hand the drain to the loop, do not run it here.
        if self._loop is not None and not self.should_exit:
            log.info("signal %d: draining open streams", sig)
            self._loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


class LastChunk:
    """SSE bytes as one HTTP/1.1 chunk. The fan-out writes the same ``bytes`` object to
    every caught-up viewer of a stream in a row, so the last one is kept: one copy per
    message, not one per viewer (and no copy at all when the socket takes it whole)."""

    __slots__ = ("_chunk", "_data")

    def __init__(self) -> None:
        self._data = b""
        self._chunk = b""

    def of(self, data: bytes) -> bytes:
        if data is not self._data:
            self._data = data
            self._chunk = b"%x\r\n%b\r\n" % (len(data), data)
        return self._chunk


class DirectWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering each request the direct-write and the
    disconnect-callback extensions."""

    _lost = False
    _on_lost: Callable[[], None] | None = None
    _held: HeldWrites | None = None
    _chunks = LastChunk()  # shared by the connections of the process (one event loop)
    notsent_lowat = 0
    """``TCP_NOTSENT_LOWAT`` for each connection (0: leave the kernel's); set per server."""
    sndbuf = 0
    """``SO_SNDBUF`` for each connection (0: leave the kernel's)."""
    max_head = 64 * 1024
    """The most bytes of a request's head (request line and headers); set per server."""
    _head = 0
    """Bytes received of the request head being parsed; -1 once its headers are complete."""
    _parsed = 0
    _headers = 0
    _refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # Each asyncio.Event, and the pipeline, is a deque of 760 bytes made with the
        # connection, and an open viewer's connection never waits on them.
        self.pipeline = Pipeline()  # type: ignore[assignment]
        writable = LazyEvent()
        writable.set()
        self.flow._is_writable_event = writable
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        # A viewer that stops reading holds what the kernel would buffer for it: without
        # a bound, megabytes (the send buffer autotunes up to tcp_wmem's maximum). With
        # it, the kernel holds at most this much unsent, the socket reports itself
        # unwritable past it, and the rest stays in the process, where it is bounded and
        # counted (sse_response's DIRECT_WRITE_LIMIT, then the slow-viewer cut-off).
        with contextlib.suppress(OSError):
            if self.notsent_lowat:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, self.notsent_lowat)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)

    # --- the request head's limits: httptools (llhttp) keeps none of its own ---

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting the bytes of a head still incomplete: past
        ``max_head`` the request is refused (431) and the connection closed, so a header
        of megabytes costs at most ``max_head`` and one read of memory."""
        if self._refused:
            return
        if self._head >= 0:
            self._head += len(data)
        super().data_received(data)
        if self._refused or self._head > self.max_head:
            self._refuse_head()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        self._headers += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._parsed > self.max_head or self._headers > MAX_HEADERS:
            self._refused = True  # the whole head came in one read: never started
            return
        self._head = -1
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.message_event.is_set():
            cycle.message_event = LazyEvent()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._head = self._parsed = self._headers = 0

    def _refuse_head(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete:  # else a response is under way
            self.transport.write(_head_refusal(self.max_head))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # ASGI types extensions as dict[str, dict]; ours are callables, by design.
        self.scope["extensions"] = cast(
            Any,
            {
                DIRECT_WRITE: self._direct_writer,
                ON_DISCONNECT: self._on_disconnect,
                HOLD_WRITES: self._hold_writes,
                DETACH: self._detach,
            },
        )

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = DetachableCycle  # the same object, which may outlive its task
        super()._start_asgi_task(cycle, app)

    def _detach(
        self, on_lost: Callable[[], None]
    ) -> tuple[Callable[[Any], asyncio.Task[None]], Callable[[], None]] | None:
        """Let the response go on without its task (``sse_response.DETACH``)."""
        cycle = getattr(self, "cycle", None)
        if (
            not isinstance(cycle, DetachableCycle)
            or self._lost
            or not cycle.response_started
            or cycle.response_complete
            or cycle.disconnected
        ):
            return None
        cycle.detached = True
        self._on_lost = on_lost
        # The request is done with: what the response still uses of its scope is the
        # method (``RequestResponseCycle.send``). Its headers, query, addresses and these
        # extensions (a kilobyte and more) need not live as long as the viewer watches.
        cycle.scope = self.scope = cast(Any, {"type": "http", "method": cycle.scope["method"]})
        self.headers = []
        return self._spawn, self.transport.close

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        """A task of a detached response: the server's, awaited at its shutdown as the
        requests' own are."""
        task: asyncio.Task[None] = self.loop.create_task(coro)
        tasks = self.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _hold_writes(self) -> Callable[[], None] | None:
        """Keep what the response writes (its head included) in memory until the
        returned function is called: a response's first writes then reach the socket as
        one ``send``. None once the response has started."""
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_started or self._held is not None:
            return None
        held = self._held = HeldWrites(cycle.transport)
        cycle.transport = held

        def release() -> None:
            if self._held is held:
                self._held = None
                cycle.transport = held.real
            held.release()

        return release

    def _on_disconnect(self, callback: Callable[[], None]) -> None:
        if self._lost:
            callback()
        else:
            self._on_lost = callback

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost = True
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback()

    def _direct_writer(self, chunks: bool = False) -> Writer | None:
        cycle = getattr(self, "cycle", None)
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or cycle.disconnected
        ):
            return None
        transport = self.transport
        if chunks:  # one closure made, of the two: every open viewer holds its writer

            def write_chunk(chunk: bytes) -> bool:
                if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                    return False
                (self._held or transport).write(chunk)
                return True

            return write_chunk
        last = self._chunks

        def write(data: bytes) -> bool:
            if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                return False
            (self._held or transport).write(last.of(data))
            return True

        return write


class LazyEvent(asyncio.Event):
    """An ``asyncio.Event`` whose waiters' deque (760 bytes) is made when someone first
    waits: uvicorn makes two for every connection, and an SSE viewer's waits on neither."""

    _w: collections.deque[asyncio.Future[bool]] | None = None

    def __init__(self) -> None:  # no deque: ``_waiters`` makes it
        self._value = False

    @property
    def _waiters(self) -> collections.deque[asyncio.Future[bool]]:  # type: ignore[override]
        w = self._w
        if w is None:
            w = self._w = collections.deque()
        return w

    def set(self) -> None:
        if not self._value:
            self._value = True
            for fut in self._w or ():
                if not fut.done():
                    fut.set_result(True)


class Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests, as a list (56 bytes empty, where its deque
    is 760): it only ever holds a request or two."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class DetachableCycle(RequestResponseCycle):
    """uvicorn's request cycle, whose response may outlive the app's call
    (``sse_response.DETACH``): once detached, the app returning with the response
    unfinished leaves the connection open, and the response's end still starts the
    connection's next request (or its keep-alive timeout)."""

    detached = False

    async def run_asgi(self, app: Any) -> None:
        """uvicorn's, except for a detached response (its ``else`` and ``finally``)."""
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected and not self.detached:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            if not self.detached:
                self.on_response = lambda: None


class HeldWrites:
    """A transport whose writes wait in memory until ``release`` (or ``close``), then go
    out as one (``DirectWriteProtocol._hold_writes``); anything else is the real one's."""

    __slots__ = ("_held", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self._held: list[bytes] | None = []

    def write(self, data: bytes) -> None:
        if self._held is None:
            self.real.write(data)
        else:
            self._held.append(data)

    def release(self) -> None:
        held, self._held = self._held, None
        if held and not self.real.is_closing():
            self.real.write(b"".join(held))

    def close(self) -> None:
        self.release()
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


MAX_HEADERS = 256
"""The most header lines a request may carry (431 beyond)."""


def _head_refusal(limit: int) -> bytes:
    body = (
        b'{"error":"headers_too_large","message":"the request line and headers are over '
        b'%d bytes, or over %d headers"}' % (limit, MAX_HEADERS)
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)
    )


TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
"""Linux's option number (Python names it from 3.12 on)."""


def make_server(
    app: FastAPI,
    host: str,
    port: int,
    shutdown_seconds: float,
    log_level: str,
    *,
    reuse_port: bool = False,
    notsent_lowat: int = 0,
    sndbuf: int = 0,
    gc_freeze: bool = True,
    max_header_bytes: int = 64 * 1024,
    keep_alive_seconds: float = 75.0,
    trusted_proxies: str | None = None,
) -> DrainingServer:
    """``trusted_proxies``: uvicorn's ``forwarded_allow_ips`` (None: its default, the
    ``FORWARDED_ALLOW_IPS`` variable or else loopback)."""
    raise_nofile_limit()
    protocol = type(
        "DirectWriteProtocol",
        (DirectWriteProtocol,),
        {"notsent_lowat": notsent_lowat, "sndbuf": sndbuf, "max_head": max_header_bytes},
    )

    def drain() -> None:
        hub = getattr(app.state, "hub", None)
        if hub is not None:
            hub.drain()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(max(1, shutdown_seconds)),
        timeout_keep_alive=max(1, round(keep_alive_seconds)),
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http=protocol,
        forwarded_allow_ips=trusted_proxies,
    )

    def freezer() -> Freezer:
        hub = app.state.hub
        return Freezer(lambda: (hub.viewers, hub.left))

    return DrainingServer(config, drain, reuse_port, freezer if gc_freeze else None)
