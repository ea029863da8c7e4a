"""What a long-running process sets up for itself: the open-file limit raised (every
viewer and bench connection is a socket), and its Prometheus ``/metrics`` on a port of
its own, served by its event loop (the worker's, the webhook deliverer's).

Not prometheus_client's ``start_http_server``: its thread built each scrape, and the
garbage collections that set off finalized there what the loop's tasks let go of (the
model SDKs' suspended async generators: "async generator already executing" in the
worker's log). Here a scrape is one more callback of the loop. Every path answers GET and
HEAD (405 else), one request per connection, its head bounded in time and size, at most
``MAX_CONNECTIONS`` at once.
"""

from __future__ import annotations

import asyncio
import resource

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_HEAD = 8192
"""Bytes of a request's line and headers."""
READ_SECONDS = 5.0
"""Time for a request's head to arrive."""
MAX_CONNECTIONS = 16
"""Scrapes served at once."""


def raise_nofile_limit() -> int:
    """Raise the open-file soft limit to the hard limit (often 1,024 vs much more): each
    viewer is a socket. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class MetricsServer:
    """``await MetricsServer(registry).start(host, port)``; ``await server.stop()``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._server: asyncio.Server | None = None
        self._answering: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        """The connections being answered: closed by ``stop``, which awaits their tasks."""

    async def start(self, host: str, port: int) -> MetricsServer:
        self._server = await asyncio.start_server(self._connected, host, port, limit=MAX_HEAD)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in self._answering.values():
            writer.transport.abort()  # its read ends; its task ends with it
        await asyncio.gather(*self._answering, return_exceptions=True)
        await server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self._server is None or len(self._answering) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._answering[task] = writer
        try:
            await self._answer(reader, writer)
        except ConnectionError:
            pass
        finally:
            del self._answering[task]
            writer.transport.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        method = head.split(b" ", 1)[0]
        if method not in (b"GET", b"HEAD"):
            writer.write(_response(b"405 Method Not Allowed", b"text/plain", b"", b"GET, HEAD"))
            return
        body = generate_latest(self.registry)
        response = _response(b"200 OK", CONTENT_TYPE_LATEST.encode(), body)
        writer.write(response if method == b"GET" else response[: len(response) - len(body)])
        await writer.drain()


def _response(status: bytes, content_type: bytes, body: bytes, allow: bytes = b"") -> bytes:
    allowed = b"Allow: %s\r\n" % allow if allow else b""
    return (
        b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s"
        % (status, content_type, len(body), allowed, body)
    )
