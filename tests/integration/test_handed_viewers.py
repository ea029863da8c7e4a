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

import pytest

from broadcaster.transport import wire
from tests.support.inprocess import Bare, Front, serving
from tests.support.polling import until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def front(redis_url: str) -> AsyncIterator[Front]:
    env = {
        "BROADCASTER_KEEPALIVE_SECONDS": "1",
        "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "BROADCASTER_SLOW_VIEWER_TIMEOUT": "1",
    }
    async with serving(redis_url, env, notsent_lowat=16384, sndbuf=8192) as front:
        yield front


class Viewer(Bare):
    """One SSE viewer on a bare socket."""

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
    for n, v in enumerate(viewers):
        await v.until(b"id: 4.")
        try:
            await v.until(b": ping", seconds=5)
        except TimeoutError:
            raise AssertionError(f"viewer {n}: no ping; {_states(front, sid)}") from None
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


async def test_each_connection_has_the_listening_sockets_options(front: Front) -> None:
    """``TCP_NOTSENT_LOWAT`` and ``SO_SNDBUF`` are set once, on the listening socket, and
    every accepted connection has them (Linux copies them at the accept): no socket
    object or system call of its own per connection."""
    protocol = front.server.config.http_protocol_class
    assert protocol.options_per_connection is False  # type: ignore[attr-defined]
    sid = "options-" + secrets.token_hex(4)
    await front.log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    viewers = [await Viewer.open(front.port, sid) for _ in range(3)]
    for v in viewers:
        await v.until(b"id: 1.")
    conns = [c for c in front.server.server_state.connections if c.transport is not None]
    assert len(conns) >= 3
    for conn in conns:
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, wire.TCP_NOTSENT_LOWAT) == 16384
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 8192  # doubled
    for v in viewers:
        v.close()


def test_options_a_socket_refuses_stay_each_connections() -> None:
    """A listening socket that takes no TCP option (a Unix socket) leaves each connection
    to set its own, as before."""
    protocol = type("P", (wire.DirectWriteProtocol,), {"notsent_lowat": 16384, "sndbuf": 0})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        protocol.listening([unix])
    assert protocol.options_per_connection is True
    with socket.socket() as tcp:
        protocol.listening([tcp])
        assert tcp.getsockopt(socket.IPPROTO_TCP, wire.TCP_NOTSENT_LOWAT) == 16384
    assert protocol.options_per_connection is False


def _states(front: Front, sid: str) -> str:
    """What the keepalive knows of each viewer of ``sid``: for a failure's message."""
    now = asyncio.get_running_loop().time()
    keepalive = front.hub.keepalive
    subs = [sub for t in front.hub._topics.values() if t.stream_id == sid for sub in t.subs]
    return (
        "; ".join(
            f"direct={sub.direct is not None} handed={sub.handed} armed={sub.armed} "
            f"ping_at={None if sub.ping_at is None else round(sub.ping_at - now, 2)} "
            f"ping_due={sub.ping_due} silent={round(now - sub.silent_since(), 2)}"
            for sub in subs
        )
        + f"; {len(keepalive)} entries in the keepalive's heap"
    )
