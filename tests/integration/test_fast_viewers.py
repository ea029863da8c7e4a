"""A viewer of a stream the front-end watches is answered from the parser's callback, with
no ASGI scope and no task (``viewers/fastpath.py``, ``transport/wire.py``): what it is sent,
and every rule of the route, must be the app's. The front-end runs in-process (a real
uvicorn with the project's protocol on 127.0.0.1, a real Redis), its viewers are bare
sockets, and ``FastViewers.answered`` tells which way each request went."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from broadcaster.auth import tokens
from broadcaster.transport import line
from tests.support.fast_viewers import NEWEST, Conn, at_newest, path, serving, stream, tag_of
from tests.support.polling import until

pytestmark = pytest.mark.anyio

SECRET = "fast-viewers-test-secret-0123456789abcdef"
TURNS = {"BROADCASTER_ADMIT_WAIT_SECONDS": "10", "BROADCASTER_ADMIT_LAG_MS": "0"}
"""Every new viewer takes its turn at the rate (no loop-lag gate), and waits up to 10 s."""


async def test_a_watched_stream_is_answered_without_the_app_and_alike(redis_url: str) -> None:
    async with serving(redis_url) as front:
        sid = await stream(front)
        answered = front.fast.answered
        via_app = await Conn.get(front.port, path(sid), "last-event-id: 1")  # no tag: app
        await via_app.until(b"id: 3.")
        assert front.fast.answered == answered
        last = via_app.got.split(b"id: 3.")[1].split(b"\n")[0].decode()
        fast = await Conn.get(front.port, path(sid), f"last-event-id: 2.{tag_of(via_app, 2)}")
        await fast.until(b"id: 3.")
        assert front.fast.answered == answered + 1
        status, fast_head = fast.head()
        _, app_head = via_app.head()
        assert status == b"HTTP/1.1 200 OK"
        for h in (fast_head, app_head):
            h.pop(b"date")
        assert fast_head == app_head  # the same headers, chunked, as the app sends
        assert fast_head[b"transfer-encoding"] == b"chunked"
        assert b"retry: " in fast.got and fast.ids() == [3]

        # Live events, the keepalive, the end: as any handed-over viewer's.
        await front.log.append(sid, [{"type": "data-n", "i": 3}], kind="feed")
        await fast.until(b"id: 4.")
        await fast.until(b": ping", seconds=5)
        await front.log.append(sid, [{"type": "finish"}], kind="feed")
        await fast.until(b"0\r\n\r\n")
        assert fast.ids() == [3, 4, 5] and b"[DONE]" in fast.got
        # The connection serves its next request (keep-alive) as after any response.
        fast.got = b""
        fast.writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        await fast.until(b"HTTP/1.1 200")
        await until(lambda: front.hub.viewers == 0, "every viewer left")
        assert front.app.state.slots.open == 0
        for c in (fast, via_app):
            c.close()
        assert last


async def test_a_viewer_answered_at_once_never_has_an_http_protocol(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain GET the fast path answers at once is read by the connection's first
    protocol (``head.HeadFirst``), its line from then on: no uvicorn protocol is made for
    it; another request on a new connection, and the viewer's connection once its
    response ended, get one."""
    async with serving(redis_url) as front:
        sid = await stream(front)
        protocol = front.server.config.http_protocol_class
        made: list[object] = []
        real = protocol._made.__func__  # type: ignore[attr-defined]

        def counted(cls: type) -> object:
            made.append(cls)
            return real(cls)

        monkeypatch.setattr(protocol, "_made", classmethod(counted))
        before = front.fast.answered
        viewers = [await Conn.get(front.port, path(sid), at_newest(sid)) for _ in range(5)]
        for v in viewers:
            await v.until(b"retry: ")
        assert front.fast.answered == before + 5
        assert made == []
        assert (
            sum(isinstance(c, line.ViewerLine) for c in front.server.server_state.connections) >= 5
        )
        other = await Conn.get(front.port, "/healthz")
        await other.until(b"HTTP/1.1 200")
        assert len(made) == 1
        await front.log.append(sid, [{"type": "finish"}], kind="feed")
        for v in viewers:
            await v.until(b"0\r\n\r\n")
        viewers[0].got = b""
        viewers[0].writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        await viewers[0].until(b"HTTP/1.1 200")


async def test_from_the_start_and_from_memory(redis_url: str) -> None:
    """A viewer from the start of a stream (answered without the app when the topic's
    tail holds its whole history: the herd test), and one resuming from the newest
    event, answered without the app, each with what it lacks."""
    async with serving(redis_url) as front:
        sid = await stream(front, events=4)
        resumed = front.app.state.metrics.resumed_from_memory._value.get()
        start = await Conn.get(front.port, path(sid))
        await start.until(b"id: 4.")
        probe = await Conn.get(front.port, path(sid), "last-event-id: 3")  # app: tag-less
        await probe.until(b"id: 4.")
        tag = tag_of(probe, 4)
        before = front.fast.answered
        newest = await Conn.get(front.port, path(sid, f"last_event_id=4.{tag}"))
        await newest.until(b"retry: ")
        assert front.fast.answered == before + 1
        assert start.ids() == [1, 2, 3, 4]
        await front.log.append(sid, [{"type": "data-n", "i": 9}], kind="feed")
        await newest.until(b"id: 5.")
        assert newest.ids() == [5]
        assert front.app.state.metrics.resumed_from_memory._value.get() == resumed + 1
        for c in (start, probe, newest):
            c.close()


async def test_a_herd_at_a_stream_not_watched_yet_waits_for_its_topic(redis_url: str) -> None:
    """50 viewers from the start of a short stream the front-end does not watch, their
    requests sent at once: where the stream stands is read once, its topic made, and
    they wait for it (and for its history, read once into the tail), instead of each
    reading the log, and are answered without the app."""
    async with serving(redis_url) as front:
        sid = "herd-" + secrets.token_hex(4)
        await front.log.append(sid, [{"type": "data-n", "i": i} for i in range(3)], kind="feed")
        before, reads = front.fast.answered, front.hub.arrivals.reads
        conns = await asyncio.gather(*(Conn.get(front.port, path(sid)) for _ in range(50)))
        for c in conns:
            await c.until(b"id: 3.")
            assert c.ids() == [1, 2, 3]
        assert front.fast.answered == before + 50
        assert front.hub.arrivals.reads == reads + 1
        await front.log.append(sid, [{"type": "finish"}], kind="feed")
        for c in conns:
            await c.until(b"[DONE]")
            assert c.ids() == [1, 2, 3, 4]


async def test_what_it_cannot_answer_goes_to_the_app(redis_url: str) -> None:
    """Errors, a stream not watched here, a compact replay, HTTP/1.0 and a resume point
    the topic does not hold are the app's to answer, as before."""
    async with serving(redis_url) as front:
        sid = await stream(front)
        before = front.fast.answered
        cases = [
            (path("no/such"), (), b"404"),
            (path("x" * 65), (), b"404"),
            (path("never-written-" + secrets.token_hex(3)), (), b"404"),
            (path(sid), ("last-event-id: abc",), b"400"),
            (path(sid), ("last-event-id: 99",), b"409"),
            (path(sid), ("last-event-id: 2.00000000",), b"409"),
            (path(sid, "compact=1"), (), b"200"),
        ]
        for target, headers, status in cases:
            conn = await Conn.get(front.port, target, *headers)
            await conn.until(b"\r\n\r\n")
            assert conn.got.startswith(b"HTTP/1.1 " + status), (target, conn.got[:200])
            conn.close()
        old = await Conn.get(front.port, path(sid), version="1.0")
        await old.until(b"id: 3.")
        assert old.got.startswith(b"HTTP/1.1 200")
        old.close()
        assert front.fast.answered == before


async def test_tokens_are_checked_as_the_route_checks_them(redis_url: str) -> None:
    async with serving(redis_url, BROADCASTER_TOKEN_SECRET=SECRET) as front:
        sid = "fast-" + secrets.token_hex(4)
        mine = _token([sid], subject="ada")
        await stream(front, 2, f"authorization: Bearer {mine}", sid=sid)
        before = front.fast.answered
        other = _token(["elsewhere"])
        bearer = await Conn.get(
            front.port, path(sid), f"authorization: Bearer {mine}", at_newest(sid)
        )
        query = await Conn.get(
            front.port, path(sid, f"token={mine}&presence=1&last_event_id={NEWEST[sid]}")
        )
        for c in (bearer, query):
            await c.until(b"retry: ")
        assert front.fast.answered == before + 2
        refused = [
            (await Conn.get(front.port, path(sid)), b"401"),
            (await Conn.get(front.port, path(sid), "authorization: Bearer nonsense"), b"401"),
            (await Conn.get(front.port, path(sid), f"authorization: Bearer {other}"), b"403"),
        ]
        for conn, status in refused:
            await conn.until(b"\r\n\r\n")
            assert conn.got.startswith(b"HTTP/1.1 " + status), conn.got[:200]
        assert front.fast.answered == before + 2
        # The viewer that asked is told the stream's viewer count.
        await query.until(b"data-viewers")
        for c in (bearer, query, *(c for c, _ in refused)):
            c.close()


def _token(read: list[str], subject: str | None = None) -> str:
    return tokens.mint_token(SECRET, read=read, sub=subject, ttl_seconds=600)


async def test_a_cross_origin_request_gets_the_apps_cors_headers(redis_url: str) -> None:
    async with serving(redis_url, BROADCASTER_CORS_ORIGINS="https://app.example") as front:
        sid = await stream(front)
        before = front.fast.answered
        browser = await Conn.get(
            front.port, path(sid), "origin: https://app.example", at_newest(sid)
        )
        plain = await Conn.get(front.port, path(sid), at_newest(sid))
        for c in (browser, plain):
            await c.until(b"retry: ")
        # With CORS the app answers them all: its middleware adds ``vary: Origin`` even to
        # an answer to a request without an ``Origin`` (tests/integration/test_path_parity.py).
        assert front.fast.answered == before
        _, head = browser.head()
        assert head[b"access-control-allow-origin"] == b"https://app.example"
        assert plain.head()[1][b"vary"] == b"origin"  # (head() lowers each line)
        for c in (browser, plain):
            c.close()


async def test_viewers_past_the_admission_rate_wait_their_turn_without_a_task(
    redis_url: str,
) -> None:
    """At 20 viewers a second, 60 viewers arriving at once: each waits for its turn (one
    timer for all), and gets everything; one that leaves while waiting takes no slot."""
    env = {**TURNS, "BROADCASTER_ADMIT_PER_SECOND": "20"}
    async with serving(redis_url, **env) as front:
        sid = await stream(front)
        await asyncio.sleep(1.1)  # the bucket fills again
        before = front.fast.answered
        tasks = len(asyncio.all_tasks())
        started = time.monotonic()
        conns = [await Conn.get(front.port, path(sid), at_newest(sid)) for _ in range(60)]
        leaver = conns.pop()
        await asyncio.sleep(0.3)
        assert len(asyncio.all_tasks()) - tasks < 5  # nobody waits in a task of its own
        leaver.close()
        await front.log.append(sid, [{"type": "data-n", "i": 3}], kind="feed")
        for c in conns:
            await c.until(b"retry: ", seconds=20)
        took = time.monotonic() - started
        assert took > 1.5, took  # 20 at once, then 20 a second
        for c in conns:  # the event appended while most waited: none missed it
            await c.until(b"id: 4.")
            assert c.ids() == [4]
        assert front.fast.answered == before + 59
        await until(lambda: front.hub.connections == 60, "59 and the first viewer")
        assert front.app.state.slots.open == 60
        for c in conns:
            c.close()
        await until(lambda: front.hub.connections == 1, "they left")


async def test_a_request_sent_behind_a_waiting_viewer_is_answered_after_its_stream(
    redis_url: str,
) -> None:
    """HTTP/1.1 pipelining is legal (a proxy may send it): a request behind a viewer that
    waits for its turn sends that viewer to the app, which answers it in its turn, and
    the request behind it once its stream is over, each whole, once, in order."""
    env = {**TURNS, "BROADCASTER_ADMIT_PER_SECOND": "1"}
    async with serving(redis_url, **env) as front:
        sid = await stream(front)
        first = await Conn.get(front.port, path(sid), at_newest(sid))
        await first.until(b"retry: ")  # took the turn there was (at most one a second)
        conn = await Conn.get(front.port, path(sid), at_newest(sid))  # waits its turn
        conn.send("/healthz")
        await conn.until(b"retry: ")
        assert conn.got.startswith(b"HTTP/1.1 200") and b"text/event-stream" in conn.got
        await front.log.append(sid, [{"type": "finish"}], kind="feed")
        await conn.until(b'{"status":"ok"}')
        stream_part, _, health = conn.got.partition(b"0\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert b"[DONE]" in stream_part and health, conn.got[-400:]
        assert conn.got.count(b"HTTP/1.1 ") == 2


async def test_a_drain_ends_fast_viewers_and_those_waiting(redis_url: str) -> None:
    """A drain ends the fast viewers' responses cleanly (the chunked body's end: an
    EventSource reconnects elsewhere), and those still waiting for their turn are ended
    so when it comes; the server's shutdown closes their connections before that."""
    env = {**TURNS, "BROADCASTER_ADMIT_PER_SECOND": "2"}
    async with serving(redis_url, **env) as front:
        sid = await stream(front)
        await asyncio.sleep(1.1)
        conns = [await Conn.get(front.port, path(sid), at_newest(sid)) for _ in range(5)]
        await conns[0].until(b"retry: ")
        front.hub.drain()
        for c in conns:
            await c.until(b"0\r\n\r\n")
        assert b"[DONE]" not in b"".join(c.got for c in conns)
        await until(lambda: front.hub.connections == 0, "all left")


async def test_a_trusted_proxys_clients_are_counted_by_address(redis_url: str) -> None:
    """Behind a trusted proxy, the per-address limit counts the client the proxy names,
    as the app's proxy-headers middleware finds it; past it, the app refuses (429)."""
    env = {"BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "2", "BROADCASTER_TRUSTED_PROXIES": "*"}
    async with serving(redis_url, **env) as front:
        sid = await stream(front)
        before = front.fast.answered
        xff = "x-forwarded-for: 203.0.113."
        a = [await Conn.get(front.port, path(sid), xff + "7", at_newest(sid)) for _ in "ab"]
        b = await Conn.get(front.port, path(sid), xff + "8", at_newest(sid))
        for c in (*a, b):
            await c.until(b"retry: ")
        assert front.fast.answered == before + 3
        third = await Conn.get(front.port, path(sid), xff + "7", at_newest(sid))
        await third.until(b"\r\n\r\n")
        assert third.got.startswith(b"HTTP/1.1 429"), third.got[:200]
        for c in (*a, b, third):
            c.close()


async def test_the_end_of_a_stream_ends_every_handed_response_with_no_task(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal event goes to every caught-up viewer from the fan-out; the end of
    each response (the chunked body's end) follows at once, with no task per viewer,
    and each connection serves its next request."""
    async with serving(redis_url) as front:
        sid = await stream(front)
        conns = [await Conn.get(front.port, path(sid), at_newest(sid)) for _ in range(30)]
        for c in conns:
            await c.until(b"retry: ")
        protocol = line.ViewerLine  # each viewer's connection once answered
        spawned: list[object] = []
        real = protocol.spawn

        def spawn(self: object, coro: object) -> object:
            spawned.append(coro)
            return real(self, coro)

        monkeypatch.setattr(protocol, "spawn", spawn)
        ends: list[bytes] = []

        class Ends(line.LastChunk):
            def of(self, data: bytes) -> bytes:
                ends.append(data)
                return super().of(data)

        monkeypatch.setattr(protocol, "last_chunks", Ends(line.END))
        await front.log.append(sid, [{"type": "finish"}], kind="feed")
        for c in conns:
            await c.until(b"[DONE]")
            await c.until(b"0\r\n\r\n")
        assert len(spawned) <= 1, len(spawned)  # the first viewer's, were the app to answer it
        # The terminal event and the body's end went out in one write to each viewer,
        # from the fan-out (``Holder.finish``): these 30, and the first viewer
        # (``stream``).
        assert len(ends) == 31 and all(b"[DONE]" in e for e in ends), ends[:2]
        await until(lambda: front.hub.viewers == 0, "every viewer left")
        assert front.app.state.slots.open == 0
        for c in conns:
            c.got = b""
            c.writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            await c.until(b"HTTP/1.1 200")


async def test_a_defect_in_the_answer_from_the_parser_leaves_the_request_to_the_app(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(redis_url) as front:
        sid = await stream(front)

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a defect")

        monkeypatch.setattr(front.fast, "open", broken)
        conn = await Conn.get(front.port, path(sid), at_newest(sid))
        await conn.until(b"retry: ")
        assert conn.got.startswith(b"HTTP/1.1 200")
        await front.log.append(sid, [{"type": "data-n", "i": 3}], kind="feed")
        await conn.until(b"id: 4.")
        assert "answering a viewer from the parser failed" in caplog.text


async def test_a_viewer_answered_from_the_parser_ends_with_its_token(redis_url: str) -> None:
    """Answered from the parser (no task, handed over at once), a viewer holds its token's
    expiry: at its ``exp`` plus the leeway it gets ``data-token-expired`` (no id) and the
    chunked body's end, no ``[DONE]``, and the connection serves its next request."""
    secret = "fast-expiry-secret-0123456789abcdef0123"
    env = {"BROADCASTER_TOKEN_SECRET": secret, "BROADCASTER_TOKEN_LEEWAY_SECONDS": "0"}
    async with serving(redis_url, **env) as front:
        long_lived = tokens.mint_token(secret, read=["*"], ttl_seconds=600)
        sid = await stream(front, 3, f"authorization: Bearer {long_lived}")
        short = tokens.mint_token(secret, read=[sid], ttl_seconds=2)
        before = front.fast.answered
        fast = await Conn.get(
            front.port, path(sid), f"authorization: Bearer {short}", at_newest(sid)
        )
        await fast.until(b"retry: ")
        assert front.fast.answered == before + 1, "answered from the parser"
        assert len(front.app.state.viewing.expiries) >= 1
        await fast.until(b"0\r\n\r\n", seconds=10)
        assert b"event: data-token-expired\ndata: " in fast.got and b"[DONE]" not in fast.got
        assert b'"reason":"expired"' in fast.got
        fast.got = b""
        fast.writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        await fast.until(b"HTTP/1.1 200")
        fast.close()
