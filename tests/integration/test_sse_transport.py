"""The tests' event-stream transport (tests/support/sse_transport.py) answers as httpx's
own: the same status, headers and body for chunked, sized and connection-delimited
responses, the same error classes for a dropped connection, a malformed answer and a
silent server; everything but an event-stream ``GET`` over plain HTTP goes through httpx's
transport. Against canned answers from a socket server in this process, and a real
front-end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from broadcaster.core import connection
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from tests.support.procs import read_sse, start_frontend
from tests.support.sse_transport import SSETransport

pytestmark = pytest.mark.anyio

EVENTS = {"accept": "text/event-stream"}

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[str]:
    """A socket server in this process answering every connection with ``answer``, then
    closing it; on exit it waits for its connections' handlers."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")  # the request's head
            await answer(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with asyncio.timeout(10):
            await asyncio.gather(*handlers)


def _canned(raw: bytes, hold: bool = False) -> Answer:
    """Send ``raw``, then close (a dropped connection, if it is cut short), or with
    ``hold`` keep the connection open, silent, until the client closes it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if hold:
            await reader.read()

    return answer


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-two: a\r\nx-two: b\r\n\r\n"
    b"e\r\nid: 1\ndata: a\n\r\n11;ext=1\r\nid: 2\ndata: bcd\n\n\r\n0\r\n\r\n"
)
SIZED = b"HTTP/1.1 409 Conflict\r\ncontent-length: 5\r\n\r\nstale"
UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: x\n\ndata: y\n\n"


async def _get(
    transport: httpx.AsyncBaseTransport, url: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    async with (
        httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, read=0.5)) as client,
        client.stream("GET", url + "/s?x=1", headers=EVENTS) as resp,
    ):
        body = b"".join([chunk async for chunk in resp.aiter_raw()])
        return resp.status_code, resp.headers.multi_items(), body


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (CHUNKED, b"id: 1\ndata: a\nid: 2\ndata: bcd\n\n"),
        (SIZED, b"stale"),
        (UNTIL_CLOSE, b"data: x\n\ndata: y\n\n"),
    ],
    ids=["chunked", "sized", "eof"],
)
async def test_an_answer_reads_as_through_httpx(raw: bytes, body: bytes) -> None:
    async with serving(_canned(raw)) as url:
        ours = await _get(SSETransport(), url)
        theirs = await _get(httpx.AsyncHTTPTransport(), url)
    assert ours == theirs
    assert ours[2] == body


BAD_SIZE = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
LONG_SIZE = BAD_SIZE.replace(b"zz", b"1;" + b"x" * 20_000)  # past the transport's 8 KiB


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        # The connection dropped between two chunks, and inside one.
        (_canned(CHUNKED[: CHUNKED.index(b"11;")]), httpx.RemoteProtocolError),
        (_canned(CHUNKED[: CHUNKED.index(b"bcd")]), httpx.RemoteProtocolError),
        (_canned(BAD_SIZE), httpx.RemoteProtocolError),
        (_canned(LONG_SIZE), httpx.RemoteProtocolError),
        (_canned(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"), httpx.RemoteProtocolError),
        (_canned(b"nonsense\r\n\r\n"), httpx.RemoteProtocolError),
        (_canned(b"HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\n"), httpx.RemoteProtocolError),
        # A head, then silence past the read timeout.
        (_canned(CHUNKED[: CHUNKED.index(b"e\r\n")], hold=True), httpx.ReadTimeout),
    ],
    ids=[
        "dropped-between",
        "dropped-inside",
        "bad-size",
        "long-size-line",
        "bad-header",
        "bad-status",
        "bad-length",
        "silent",
    ],
)
async def test_a_broken_answer_raises_what_httpx_raises(
    answer: Answer, error: type[Exception]
) -> None:
    async with serving(answer) as url:
        for transport in (SSETransport(), httpx.AsyncHTTPTransport()):
            with pytest.raises(error):
                await _get(transport, url)


async def test_a_reader_that_stops_leaves_the_rest_with_the_server() -> None:
    """Little read ahead: after the first bytes of a 2 MiB body, at most a few tens of KiB
    more are taken off the socket, so (with small kernel buffers both ends) almost all of
    it is still waiting in the server's write buffer, as a slow browser's backlog would.
    (httpx's own transport had taken all of it off by then; with a 64 KiB stream limit,
    150 KiB.)"""
    total = 2 * 1024 * 1024
    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writers.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total + b"x" * total)
        await reader.read()  # until the client closes

    small = SSETransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    async with (
        serving(answer) as url,
        httpx.AsyncClient(transport=small, timeout=5) as client,
        client.stream("GET", url, headers=EVENTS) as resp,
    ):
        first = await resp.aiter_raw().__anext__()
        await asyncio.sleep(0.5)
        waiting = writers[0].transport.get_write_buffer_size()
    assert first and waiting > total - 100 * 1024, waiting


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await _get(SSETransport(), f"http://127.0.0.1:{port}")


async def test_other_requests_go_through_httpx_and_socket_options_apply(tmp_path: Path) -> None:
    """On a real front-end: publishing and ``/readyz`` through httpx's transport (kept
    alive, one connection), the events over connections of their own, each with the
    socket options asked for."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    fe = start_frontend(url, tmp_path, "frontend-transport")
    redis = connection.command_client(url)
    try:
        await EventLog(redis).append("t1", [{"type": "a"}, {"type": "finish"}], kind="feed")
        transport = SSETransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        sizes: list[int] = []
        original = socket.socket.setsockopt

        def record(sock: socket.socket, *option: object) -> None:
            if option[:2] == (socket.SOL_SOCKET, socket.SO_RCVBUF):
                sizes.append(int(option[2]))  # type: ignore[call-overload]
            original(sock, *option)  # type: ignore[call-overload]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(socket.socket, "setsockopt", record)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                got = [await read_sse(client, f"{fe.url}/v1/streams/t1/events") for _ in range(2)]
                assert (await client.get(f"{fe.url}/readyz")).status_code == 200
        assert [r.ids for r in got] == [[1, 2], [1, 2]]
        assert sizes.count(4096) >= 2  # both streams' sockets (httpx's own connection sets it too)
    finally:
        await redis.aclose()
        fe.stop()
        server.stop()
