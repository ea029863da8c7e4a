"""An httpx transport for tests that read many event streams at once: a ``GET`` that
accepts ``text/event-stream`` over plain HTTP gets a connection of its own on an asyncio
stream, its body read straight off it (chunked or not); every other request (publishing,
``/readyz``, anything over TLS) goes through httpx's own transport, built from the same
arguments.

Why: a live event cost a viewer about 200 µs of CPU through httpx's connection pool
(httpcore, h11, anyio: work per chunk received), against about 75 µs read off an asyncio
stream; a test with a hundred viewers spent most of its process's CPU there, on two cores
shared with the servers it measures. The viewers see the same bytes, the same status and
headers, the same errors (``httpx.ReadError`` on a dropped connection, ``httpx.ReadTimeout``
past the client's read timeout), and the response is the same ``httpx.Response``:
``aiter_lines`` and the rest work on it unchanged.

It reads little ahead of its reader (asyncio's stream pauses the socket past twice its
limit, 16 KiB here): a reader that stops reading leaves the rest in the kernel's receive
buffer, where a small one (``socket_options``) makes the backlog reach the server soon, as
a slow browser's does. (httpx's own transport had taken 2 MiB off the socket ahead of a
reader that stopped after its first bytes.)

The server's answer is parsed strictly: a malformed status line, header or chunk is a
``httpx.RemoteProtocolError``, as httpx would raise."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx

MAX_HEAD = 8 * 1024
"""The most a response's status line and headers, or a chunk's size line, may take; also
what the stream reads ahead of its reader, at most twice this."""
CHUNK = 64 * 1024
"""The most read at once."""


def _timeout(request: httpx.Request, which: str) -> float | None:
    value: float | None = request.extensions.get("timeout", {}).get(which)
    return value


async def _read(coro: Any, seconds: float | None, what: str) -> bytes:
    """``coro``, a read of ``what`` off the stream, within ``seconds``; its failures as
    httpx's: silence is ``ReadTimeout``, a connection closed inside it or a line past
    ``MAX_HEAD`` (``readline`` says that with a ``ValueError``) ``RemoteProtocolError``, a
    socket error ``ReadError``."""
    try:
        async with asyncio.timeout(seconds):
            data: bytes = await coro
            return data
    except TimeoutError:
        raise httpx.ReadTimeout(f"no {what} within the read timeout") from None
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise httpx.RemoteProtocolError(f"no complete {what}") from exc
    except OSError as exc:  # ConnectionError among them
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: httpx.Headers,
        read_timeout: float | None,
    ):
        self._reader, self._writer, self._read_timeout = reader, writer, read_timeout
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = None if self._chunked else headers.get("content-length")
        if length is not None and not length.isdigit():
            raise httpx.RemoteProtocolError(f"a malformed content-length: {length[:80]!r}")
        self._length = None if length is None else int(length)

    async def _read(self, coro: Any, what: str = "body data") -> bytes:
        return await _read(coro, self._read_timeout, what)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._chunked:
            async for data in self._chunks():
                yield data
            return
        left = self._length
        while left is None or left > 0:
            data = await self._read(self._reader.read(CHUNK if left is None else min(CHUNK, left)))
            if not data:
                if left:
                    raise httpx.RemoteProtocolError("the connection closed before the body's end")
                return
            if left is not None:
                left -= len(data)
            yield data

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            line = await self._read(self._reader.readline(), "chunk size line")
            if not line.endswith(b"\r\n"):
                if not line:  # as h11 says it: the body never ended
                    raise httpx.RemoteProtocolError("the connection closed between chunks")
                raise httpx.RemoteProtocolError(f"a malformed chunk size line: {line[:80]!r}")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"a malformed chunk size: {line[:80]!r}") from None
            if size == 0:  # the last chunk; trailers (none here) until the blank line
                while (await self._read(self._reader.readline(), "trailer")) not in (b"\r\n", b""):
                    pass
                return
            data = await self._read(self._reader.readexactly(size + 2), "chunk")
            if not data.endswith(b"\r\n"):
                raise httpx.RemoteProtocolError("a chunk not followed by CRLF")
            yield data[:-2]

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class SSETransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=SSETransport(...))``: takes what
    ``httpx.AsyncHTTPTransport`` takes; ``socket_options`` apply to the streams' sockets
    too (a small receive buffer makes a slow reader's kernel queue fill soon)."""

    def __init__(self, **kwargs: Any):
        self._socket_options: list[tuple[int, int, int]] = list(kwargs.get("socket_options") or [])
        self._other = httpx.AsyncHTTPTransport(**kwargs)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (
            request.method != "GET"
            or url.scheme != "http"
            or "text/event-stream" not in request.headers.get("accept", "")
        ):
            return await self._other.handle_async_request(request)
        reader, writer = await self._connect(request)
        try:
            head = [f"GET {url.raw_path.decode('ascii')} HTTP/1.1"]
            head += [f"{k}: {v}" for k, v in request.headers.items() if k != "connection"]
            head.append("connection: close")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            status, headers = await self._head(reader, request)
            body = _Body(reader, writer, headers, _timeout(request, "read"))
        except BaseException:
            writer.close()
            raise
        return httpx.Response(
            status, headers=headers, stream=body, extensions={"http_version": b"HTTP/1.1"}
        )

    async def _connect(
        self, request: httpx.Request
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = request.url.host, request.url.port or 80
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_timeout(request, "connect")):
                family, kind, proto, _, address = (
                    await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                )[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    for option in self._socket_options:
                        sock.setsockopt(*option)
                    await loop.sock_connect(sock, address)
                except BaseException:
                    sock.close()
                    raise
                return await asyncio.open_connection(sock=sock, limit=MAX_HEAD)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def _head(
        self, reader: asyncio.StreamReader, request: httpx.Request
    ) -> tuple[int, httpx.Headers]:
        raw = await _read(reader.readuntil(b"\r\n\r\n"), _timeout(request, "read"), "response head")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"a malformed status line: {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"a malformed header: {line[:80]!r}")
            headers.append((name, value.strip()))
        return int(parts[1]), httpx.Headers(headers)

    async def aclose(self) -> None:
        await self._other.aclose()
