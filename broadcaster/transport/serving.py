"""Running an ASGI app under uvicorn, with a shutdown that does not hang.

uvicorn waits for open responses to finish before it runs the lifespan shutdown, and SSE
responses never finish by themselves: left alone, SIGTERM would hang until a timeout and
then cut connections without running their cleanup. So the signal first *drains* the hub
(every open SSE response ends cleanly; clients reconnect elsewhere with Last-Event-ID),
then uvicorn's own shutdown proceeds, bounded by ``shutdown_seconds``.

The event loop is uvloop and the HTTP parser httptools (both come with
``uvicorn[standard]``), named explicitly so a missing one fails at start rather than
silently falling back to the slower pure-Python pair. The HTTP protocol is uvicorn's
httptools protocol with the front-end's additions (``wire.py``). uvicorn is pinned to
the release these were written against; tests/unit/test_uvicorn_pin.py names what of it
is copied or overridden, and fails when any of it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio.lowlevel
import uvicorn
from uvicorn.middleware.proxy_headers import _TrustedHosts

from broadcaster.core.process import raise_nofile_limit
from broadcaster.transport.fast import FastPath
from broadcaster.transport.gcfreeze import Freezer, spaced_full_collections
from broadcaster.transport.wire import DirectWriteProtocol

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
        self._thresholds: tuple[int, int, int] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if sockets is None and self._reuse_port:
            sockets = [_reuse_port_socket(self.config.host, self.config.port)]
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        protocol = self.config.http_protocol_class
        if isinstance(protocol, type) and issubclass(protocol, DirectWriteProtocol):
            protocol.listening([s for srv in getattr(self, "servers", ()) for s in srv.sockets])
        if _ended_early:  # a SIGTERM came before uvicorn's handlers, and was swallowed
            self.handle_exit(signal.SIGTERM, None)
        # anyio loads its asyncio backend when first asked (the first request's cancel
        # scope), which a herd's first viewer would wait for.
        await anyio.lowlevel.checkpoint()
        # What start-up built (modules, the app, its schema) lives as long as the
        # process. Frozen, it is out of the collector's sight: a full collection no
        # longer stalls the event loop (every viewer's next frame) to scan it
        # (docs/performance.md). With the freezer, so are
        # the open viewers' objects, frozen after each full collection; full ones are
        # spaced (gcfreeze.py).
        gc.collect()
        self._thresholds = spaced_full_collections()
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
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called from a signal handler: hand the drain to the loop, do not run it here.
        if self._loop is not None and not self.should_exit:
            log.info("signal %d: draining open streams", sig)
            self._loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


LISTEN_BACKLOG = 4096
"""Handshakes the kernel completes ahead of the front-end taking them: a herd of viewers
coming back from a lost front-end arrives faster than one loop takes them, and a
handshake that finds the queue full is dropped and tried again by the client only after
its SYN timeout, doubled at each try. The kernel caps it at ``net.core.somaxconn``
(docs/scaling.md)."""


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def build_server(
    app: Any,
    host: str,
    port: int,
    shutdown_seconds: float,
    log_level: str,
    *,
    fast: Callable[[Callable[[str, str], str | None] | None], FastPath] | None = None,
    drain: Callable[[], None],
    viewers: Callable[[], Callable[[], tuple[int, int]]],
    reuse_port: bool = False,
    notsent_lowat: int = 0,
    sndbuf: int = 0,
    gc_freeze: bool = True,
    max_header_bytes: int = 64 * 1024,
    keep_alive_seconds: float = 75.0,
    trusted_proxies: str | None = None,
) -> DrainingServer:
    """The server of ``app``: ``fast(trusted)`` makes what the connections ask first
    (``trusted(peer, x_forwarded_for)``: the client behind a trusted proxy, None when the
    peer is none; None without proxy headers); ``drain`` is called at SIGTERM;
    ``viewers()``, once started, gives the function the freezer counts viewers with.
    ``trusted_proxies``: uvicorn's ``forwarded_allow_ips`` (None: its default, the
    ``FORWARDED_ALLOW_IPS`` variable or else loopback)."""
    raise_nofile_limit()
    protocol: type[DirectWriteProtocol] = type(
        "DirectWriteProtocol",
        (DirectWriteProtocol,),
        {"notsent_lowat": notsent_lowat, "sndbuf": sndbuf, "max_head": max_header_bytes},
    )
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
        backlog=LISTEN_BACKLOG,
    )
    if fast is not None:  # uvicorn's parsed setting, as its middleware reads it
        protocol.fast = fast(_trusted(config.forwarded_allow_ips) if config.proxy_headers else None)

    def freezer() -> Freezer:
        return Freezer(viewers())

    return DrainingServer(config, drain, reuse_port, freezer if gc_freeze else None)


def _trusted(allowed: list[str] | str) -> Callable[[str, str], str | None]:
    """The client behind a trusted proxy, as uvicorn's proxy headers middleware finds it
    (its own parser of ``forwarded_allow_ips``), for requests that skip the middleware."""
    hosts = _TrustedHosts(allowed)

    def client(peer: str, forwarded: str) -> str | None:
        if peer not in hosts:
            return None
        host, _ = hosts.get_trusted_client_address(forwarded)
        return host or None

    return client
