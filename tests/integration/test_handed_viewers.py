"""A caught-up SSE viewer holds no task of its own: its response's task ends once the
viewer is caught up (``SSEResponse.detach``), and the fan-out, the keepalive timer and a
task started only when needed serve it from then on. The front-end runs in-process (a
real uvicorn with the project's protocol on 127.0.0.1, a real Redis), so its tasks and its
hub can be looked at; its viewers are bare sockets."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from broadcaster.core import connection
from broadcaster.core.embedded import free_port
from broadcaster.core.eventlog import EventLog
from broadcaster.fanout.hub import Hub
from broadcaster.http.app import BroadcasterApp, create_app
from broadcaster.http.server import make_server
from broadcaster.http.settings import Settings
from tests.integration.test_hub import until

pytestmark = pytest.mark.anyio


@dataclass
class Front:
    app: BroadcasterApp
    port: int
    log: EventLog

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub


@pytest.fixture
async def front(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Front]:
    monkeypatch.setenv("BROADCASTER_KEEPALIVE_SECONDS", "1")
    monkeypatch.setenv("BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS", "0")
    monkeypatch.setenv("BROADCASTER_SLOW_VIEWER_TIMEOUT", "1")
    app = create_app(Settings(), redis_url)
    port = free_port()
    server = make_server(
        app, "127.0.0.1", port, 2.0, "warning", gc_freeze=False, notsent_lowat=16384, sndbuf=8192
    )
    serving = asyncio.create_task(server.serve())
    client = connection.command_client(redis_url)
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "the front-end did not start"
        yield Front(app, port, EventLog(client))
    finally:
        app.state.hub.drain()
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
        await client.aclose()


class Viewer:
    """One SSE viewer on a bare socket: what it was sent, as it came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.got = b""

    @classmethod
    async def open(cls, port: int, stream_id: str, rcvbuf: int = 0) -> Viewer:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            b"GET /v1/streams/%s/events HTTP/1.1\r\nhost: t\r\naccept: text/event-stream\r\n\r\n"
            % stream_id.encode()
        )
        return cls(reader, writer)

    async def until(self, marker: bytes, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while marker not in self.got:
                data = await self.reader.read(65536)
                assert data, f"closed before {marker!r}: {self.got[-300:]!r}"
                self.got += data

    def close(self) -> None:
        self.writer.close()


async def test_caught_up_viewers_hold_no_task_and_get_everything(front: Front) -> None:
    sid = "handed-" + secrets.token_hex(4)
    await front.log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    first = await Viewer.open(front.port, sid)
    await first.until(b"id: 1.")
    await until(lambda: front.hub.viewers == 1, "the first viewer subscribed")
    await asyncio.sleep(0.2)
    tasks = len(asyncio.all_tasks())
    viewers = [first, *[await Viewer.open(front.port, sid) for _ in range(40)]]
    for v in viewers:
        await v.until(b"id: 1.")
    await until(lambda: front.hub.viewers == 41, "every viewer subscribed")
    await asyncio.sleep(0.2)
    # Each viewer's response task ended once it was caught up: 40 more viewers, no more
    # tasks (a task each would be 40).
    assert len(asyncio.all_tasks()) - tasks < 5, len(asyncio.all_tasks()) - tasks

    # Live events go straight to every socket; keepalives come from the one timer.
    for i in range(1, 4):
        await front.log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
    for v in viewers:
        await v.until(b"id: 4.")
        await v.until(b": ping", seconds=5)
    for v in viewers:
        lines = v.got.split(b"\n")
        ids = [int(line[4:].split(b".")[0]) for line in lines if line.startswith(b"id: ")]
        assert ids == [1, 2, 3, 4]

    # A viewer that goes away leaves at once: the hub's counts fall, and its slot is free.
    for v in viewers[30:]:
        v.close()
    await until(lambda: front.hub.viewers == 30, "the departed viewers left")
    assert front.hub.connections == 30

    # The terminal event ends every response cleanly (the chunked body's end), and the
    # connection serves its next request (keep-alive), which a handed response's end
    # starts as a task's would.
    await front.log.append(sid, [{"type": "finish"}], kind="feed")
    for v in viewers[:30]:
        await v.until(b"[DONE]")
        await v.until(b"0\r\n\r\n")
    await until(lambda: front.hub.viewers == 0, "the ended viewers left")
    v = viewers[0]
    v.writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
    v.got = b""
    await v.until(b"HTTP/1.1 200")
    for v in viewers[:30]:
        v.close()


async def test_a_drain_ends_handed_viewers_cleanly(front: Front) -> None:
    sid = "handed-" + secrets.token_hex(4)
    await front.log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    viewers = [await Viewer.open(front.port, sid) for _ in range(10)]
    for v in viewers:
        await v.until(b"id: 1.")
    await until(lambda: front.hub.viewers == 10, "every viewer subscribed")
    front.hub.drain()
    for v in viewers:
        await v.until(b"0\r\n\r\n")  # ended, not cut: an EventSource reconnects elsewhere
        assert b"[DONE]" not in v.got
    await until(lambda: front.hub.viewers == 0 and front.hub.connections == 0, "all left")
    for v in viewers:
        with contextlib.suppress(Exception):
            v.close()


async def test_a_handed_viewer_that_stops_reading_is_cut_off(front: Front) -> None:
    """A caught-up viewer that stops reading: its socket fills, the fan-out's direct
    writes stop, a task takes it over, and after the slow-viewer timeout it is cut off
    (counted) and leaves; the stream's other viewer gets everything."""
    sid = "handed-" + secrets.token_hex(4)
    await front.log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    stalled = await Viewer.open(front.port, sid, rcvbuf=4096)
    reader = await Viewer.open(front.port, sid)
    for v in (stalled, reader):
        await v.until(b"id: 1.")
    await until(lambda: front.hub.viewers == 2, "both subscribed")
    metrics = front.app.state.metrics
    before = metrics.cut_off._value.get()
    big = "x" * 30_000
    for i in range(1, 41):  # 1.2 MB: past the socket's buffers and the direct-write limit
        await front.log.append(sid, [{"type": "data-n", "i": i, "pad": big}], kind="feed")
        await reader.until(b"id: %d." % (i + 1))
    await until(lambda: front.hub.viewers == 1, "the stalled viewer was cut off", 20)
    assert metrics.cut_off._value.get() == before + 1
    lines = reader.got.split(b"\n")
    ids = [int(line[4:].split(b".")[0]) for line in lines if line.startswith(b"id: ")]
    assert ids == list(range(1, 42))
    for v in (stalled, reader):
        v.close()
