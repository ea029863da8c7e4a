"""Every dimension a client can spend has a limit, on real front-end processes: the
prefixes and the positions of a ``GET /v1/events`` (and no oracle in its answers), the
connections of a token subject and of a client address (SSE on every route, Durable
Streams long-polls), the bytes forks copy per minute, the size of a request's head, and
a Redis at its ``maxmemory``. Past a connection limit a browser's ``EventSource`` gets a
``retry:`` it follows; other clients the status and ``Retry-After``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.auth import credentials, tokens
from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis
from tests.support.polling import poll
from tests.support.procs import (
    Proc,
    advertise_providers,
    own_redis,
    parse_sse,
    read_sse,
    start_frontend,
)

pytestmark = pytest.mark.anyio

PUBLISHER = "pub-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)
KEYS = credentials.hash_key(PUBLISHER) + ":publish"
FORK_BUDGET = 300_000
LIMITED = {
    "BROADCASTER_API_KEYS": KEYS,
    "BROADCASTER_TOKEN_SECRET": SECRET,
    "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
    "BROADCASTER_MAX_CONNECTIONS_PER_SUBJECT": "2",
    "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "3",
    "BROADCASTER_MAX_VIEWERS_PER_STREAM": "3",
    "BROADCASTER_EVENTS_MAX_PREFIXES": "4",
    "BROADCASTER_EVENTS_MAX_STREAMS": "20",
    "BROADCASTER_FORK_BYTES_PER_MINUTE": str(FORK_BUDGET),
    "BROADCASTER_DS_LONG_POLL_SECONDS": "20",
}
BROWSER = {
    "accept": "text/event-stream",
    "cache-control": "no-cache",
    "sec-fetch-dest": "empty",
    "sec-fetch-mode": "cors",
}
"""What Chromium's EventSource sends (tests/clients/test_browser_busy.py shows it in a
real one)."""


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def token(sub: str | None, read: list[str] | None = None, publish: tuple[str, ...] = ()) -> str:
    return tokens.mint_token(SECRET, read=read or ["*"], publish=publish, sub=sub, ttl_seconds=600)


def address() -> dict[str, str]:
    """A client address of the test's own: front-end A trusts loopback's
    ``X-Forwarded-For`` (uvicorn's default), so each test is its own client there."""
    return {"x-forwarded-for": f"198.51.100.{secrets.randbelow(250) + 1}"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, str]]:
    """Two front-ends on one Redis: A trusts loopback's ``X-Forwarded-For`` (uvicorn's
    default), B names another proxy (``BROADCASTER_TRUSTED_PROXIES``) and so counts the
    socket's peer; B also closes idle keep-alive connections after 2 s, A after the
    default 75 s."""
    logs = tmp_path_factory.mktemp("limits")
    redis = own_redis(logs / "redis")
    a = start_frontend(redis.url, logs, "limits-a", LIMITED)
    b = start_frontend(
        redis.url,
        logs,
        "limits-b",
        LIMITED
        | {"BROADCASTER_TRUSTED_PROXIES": "192.0.2.1", "BROADCASTER_KEEP_ALIVE_SECONDS": "2"},
    )
    try:
        yield a, b, redis.url
    finally:
        a.stop()
        b.stop()
        redis.stop()


async def publish(client: httpx.AsyncClient, url: str, sid: str, event: dict[str, object]) -> None:
    r = await client.post(f"{url}/v1/streams/{sid}/events", json=event, headers=bearer(PUBLISHER))
    assert r.status_code == 201, r.text


@contextlib.asynccontextmanager
async def held(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    """An SSE response held open (its status read) for the block."""
    async with client.stream("GET", url, headers=headers) as r:
        yield r


async def both_held(
    client: httpx.AsyncClient,
    stack: contextlib.AsyncExitStack,
    first: str,
    second: str,
    headers: dict[str, str],
) -> tuple[httpx.Response, httpx.Response]:
    """Two responses held (on ``stack``), asked again while one is refused 429 for at most
    10 s: a front-end gives a slot back when it sees the client of a response before
    leave, a moment after the client closed it."""
    deadline = time.monotonic() + 10
    while True:
        pair = contextlib.AsyncExitStack()
        one = await pair.enter_async_context(held(client, first, headers | address()))
        two = await pair.enter_async_context(held(client, second, headers | address()))
        if 429 not in (one.status_code, two.status_code) or time.monotonic() > deadline:
            stack.push_async_exit(pair)
            return one, two
        await pair.aclose()
        await asyncio.sleep(0.05)


async def status(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> int:
    """The status of a GET whose answer may be an SSE response that never ends: read,
    then the response closed."""
    async with client.stream("GET", url, headers=headers) as r:
        return r.status_code


# --- the request's head ---


def raw_request(port: int, head: bytes, wait: float = 10) -> tuple[bytes, float]:
    """Send ``head`` on a socket of its own; what came back before the connection
    closed, and how long that took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        got = b""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            s.sendall(head)
            while chunk := s.recv(65536):
                got += chunk
    return got, time.monotonic() - started


async def test_a_request_head_over_the_limit_is_431(limited: tuple[Proc, Proc, str]) -> None:
    """64 KiB of request line and headers, 256 headers: a 100 KB header, a 100 KB URL or
    300 headers are answered 431 at once and the connection closed; one of 20 MB is cut
    off as soon as it passes the limit (the answer may be lost in the reset, never
    waited for). The front-end serves on."""
    a, _, _ = limited
    port = a.port or 0
    big = b"x-big: " + b"a" * 100_000 + b"\r\n"
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(300))
    for head in (
        b"GET /readyz HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n",
        b"GET /readyz?" + b"a" * 100_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n",
    ):
        got, took = raw_request(port, head)
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        assert b'"error":"headers_too_large"' in got and took < 5
    huge = b"GET /readyz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000_000 + b"\r\n\r\n"
    got, took = raw_request(port, huge)
    assert got in (b"",) or got.startswith(b"HTTP/1.1 431 "), got[:200]
    assert took < 5
    fine = b"GET /readyz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 60_000 + b"\r\n\r\n"
    got, _ = raw_request(port, fine.replace(b"host: x", b"host: x\r\nconnection: close"))
    assert got.startswith(b"HTTP/1.1 200 "), got[:200]


def whole_response(s: socket.socket) -> bytes:
    """One response with a ``content-length`` read whole from ``s``."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, f"closed after {got!r}"
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, f"closed after {got!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_idle_keep_alive_connection_outlives_the_clients_idle_timeout(
    limited: tuple[Proc, Proc, str],
) -> None:
    """A connection idle for 6 s (longer than uvicorn's own 5 s and Node's fetch's 4 s)
    still takes the next request on A: the client, whose idle timeout is shorter, closes
    it first, so its next request never races the server's close. B, told 2 s, has
    closed its idle connection by then."""
    a, b, _ = limited
    request = b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", p.port or 0), timeout=10) for p in (a, b)]
    try:
        for s in socks:
            s.sendall(request)
            assert whole_response(s).startswith(b"HTTP/1.1 200 ")
        time.sleep(6)
        on_a, on_b = socks
        on_a.sendall(request)
        assert whole_response(on_a).startswith(b"HTTP/1.1 200 ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            on_b.sendall(request)
            assert on_b.recv(65536) == b"", "B kept an idle connection past its 2 s"
    finally:
        for s in socks:
            s.close()


# --- Redis at its maxmemory ---


async def test_a_full_redis_answers_507_on_every_write_and_keeps_what_it_holds(
    tmp_path: Path,
) -> None:
    """Redis at ``maxmemory`` with ``noeviction`` (deploy/redis.conf): every write route
    answers 507 ``insufficient_storage`` with Retry-After, reads go on, and every event
    stored before is still there, in order."""
    redis = EmbeddedRedis(
        tmp_path / "redis",
        persistent=False,
        extra_args=["--maxmemory-policy", "noeviction"],
    )
    redis.start(reuse=False)
    advertise_providers(redis.url)
    fe = start_frontend(redis.url, tmp_path, "full")
    admin = redis_sync.Redis.from_url(redis.url)
    try:
        async with httpx.AsyncClient(base_url=fe.url, timeout=30) as c:
            kept = [{"type": "data-step", "n": i} for i in range(50)]
            assert (await c.post("/v1/streams/kept/events", json=kept)).status_code == 201
            r = await c.put("/v1/stream/kept-ds", content=b"[1,2,3]", headers=JSON)
            assert r.status_code == 201
            fill(admin)
            fork = {"stream-forked-from": "/v1/stream/kept-ds"}
            writes = [
                ("POST", "/v1/streams/kept/events", {"json": {"type": "data-step"}}),
                ("POST", "/v1/streams/new/events", {"json": {"type": "data-step"}}),
                ("POST", "/v1/generations", {"json": {"prompt": "hi"}}),
                ("PUT", "/v1/stream/other-ds", {"content": b"[1]", "headers": JSON}),
                ("POST", "/v1/stream/kept-ds", {"content": b"[4]", "headers": JSON}),
                ("PUT", "/v1/stream/kept-fork", {"headers": fork}),
                ("POST", "/v1/chat", {"json": CHAT}),
            ]
            for method, url, kwargs in writes:
                r = await c.request(method, url, **kwargs)  # type: ignore[arg-type]
                assert r.status_code == 507, (method, url, r.text)
                assert r.json()["error"] == "insufficient_storage"
                assert int(r.headers["retry-after"]) > 0
            read = await read_sse(c, f"{fe.url}/v1/streams/kept/events", stop_after=50)
            assert read.status == 200
            assert [e.json()["n"] for e in read.events if e.id] == list(range(50))
            r = await c.get("/v1/stream/kept-ds?offset=-1")
            assert r.status_code == 200 and r.json() == [1, 2, 3]
    finally:
        admin.close()
        fe.stop()
        redis.stop()


def fill(client: redis_sync.Redis) -> None:
    """Put Redis well over its ``maxmemory``: 8 MB of filler, then a limit of half of what
    it holds. Filling up to a limit would leave it a few bytes under whenever a buffer is
    freed (a client's query buffer, say), and a write would then pass."""
    for n in range(80):
        client.set(f"filler:{n}", b"f" * 100_000)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    with pytest.raises(redis_sync.exceptions.OutOfMemoryError):
        client.set("filler:refused", b"f")


JSON = {"content-type": "application/json"}
CHAT = {
    "id": "full-chat",
    "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
}


# --- /v1/events: prefixes and resume points ---


def commands(client: redis_sync.Redis, *names: str) -> int:
    """How many of these commands Redis has run since its stats were reset."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


async def test_the_prefixes_of_a_connection_are_limited(
    limited: tuple[Proc, Proc, str],
) -> None:
    a, _, redis_url = limited
    admin = redis_sync.Redis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as c:
            viewer = bearer(token(None))
            four = "&".join(f"prefix=p{i}-" for i in range(4))
            async with held(c, f"/v1/events?{four}", viewer | address()) as r:
                assert r.status_code == 200

            async def settled() -> bool:  # the held viewer's listing is over, if it ran late
                before = commands(admin, "zrangebylex")
                await asyncio.sleep(0.2)
                return commands(admin, "zrangebylex") == before

            await poll(settled, "the held viewer's listing to end", within=30, every=0)
            admin.config_resetstat()
            many = "&".join(f"prefix=p{i}-" for i in range(2000))
            r = await c.get(f"/v1/events?{many}", headers=viewer)
            assert r.status_code == 400 and r.json()["error"] == "too_many_prefixes", r.text
            r = await c.get(f"/v1/events?{four}&prefix=p4-", headers=viewer)
            assert r.status_code == 400 and r.json()["error"] == "too_many_prefixes"
            assert commands(admin, "zrangebylex") == 0, "refused before any listing"
    finally:
        admin.close()


async def test_a_resume_point_reveals_nothing_of_streams_the_request_does_not_cover(
    limited: tuple[Proc, Proc, str],
) -> None:
    """A resume point naming a stream the request does not cover (one the token cannot
    read) gets the very answer, byte for byte, whether that stream exists or not; the
    refusals it can get name only the streams it covers."""
    a, _, _ = limited
    mine, victim = "mine-" + secrets.token_hex(4), "victim-" + secrets.token_hex(4)
    ghost = "ghost-" + secrets.token_hex(4)
    viewer = bearer(token("oracle", read=["mine-*"]))
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as c:
        for _ in range(11):
            await publish(c, a.url, victim, {"type": "data-step"})
        await publish(c, a.url, mine, {"type": "data-step"})
        await publish(c, a.url, mine, {"type": "finish"})
        r = await c.get(f"/v1/streams/{mine}/events", headers=viewer)
        events, _, _ = parse_sse(r.content)
        end = [e.id for e in events if e.id][-1]
        assert end is not None and end.startswith("2.")
        url = f"/v1/events?stream={mine}"

        async def answer(other: str, at: str) -> tuple[int, bytes]:
            resume = f"-.~{mine}={at},~{other}=12.00000000,~{other}x=5"
            r = await c.get(url, headers=viewer | address() | {"last-event-id": resume})
            return r.status_code, r.content

        for at, status in ((end, 204), ("9." + end.split(".")[1], 409)):
            of_victim, of_ghost = await answer(victim, at), await answer(ghost, at)
            assert of_victim == of_ghost, (of_victim, of_ghost)
            assert of_victim[0] == status and victim.encode() not in of_victim[1]
        assert b"resume_point_ahead" in of_victim[1] and mine.encode() in of_victim[1]


async def test_thousands_of_positions_cost_no_reads(tmp_path: Path) -> None:
    """A resume point names at most as many positions as a connection follows (1,000 by
    default): beyond, 400 before anything is read. Within it, the positions of streams
    the request does not cover are dropped unread: 900 of them cost Redis nothing, and
    the one it covers is checked in one round trip."""
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(redis.url, tmp_path, "positions")
    admin = redis_sync.Redis.from_url(redis.url)
    try:
        async with httpx.AsyncClient(base_url=fe.url, timeout=30) as c:
            for i in range(5):
                r = await c.post(f"/v1/streams/o{i}/events", json={"type": "data-step"})
                assert r.status_code == 201
            r = await c.post("/v1/streams/mine/events", json=[{"type": "x"}, {"type": "finish"}])
            assert r.status_code == 201
            r = await c.get("/v1/streams/mine/events")
            end = [e.id for e in parse_sse(r.content)[0] if e.id][-1]
            reads = ("hmget", "xrange", "xrevrange", "exists")
            for count, expected in ((5000, 400), (999, 204)):
                resume = f"-.~mine={end}," + ",".join(f"~o{i}=1" for i in range(count))
                admin.config_resetstat()
                r = await c.get("/v1/events?stream=mine", headers={"last-event-id": resume})
                assert r.status_code == expected, r.text
                spent = commands(admin, *reads)
                assert spent <= (0 if expected == 400 else 4), (count, spent)
            # The same resume point where the request covers the five (a prefix): read.
            resume = f"-.~mine={end}," + ",".join(f"~o{i}=1" for i in range(5))
            admin.config_resetstat()
            url = "/v1/events?stream=mine&prefix=o"
            assert await status(c, url, {"last-event-id": resume}) == 200
            assert commands(admin, "xrange") >= 6
    finally:
        admin.close()
        fe.stop()
        redis.stop()


# --- connections per subject and per address ---


async def test_connections_per_subject_count_every_route_and_come_back(
    limited: tuple[Proc, Proc, str],
) -> None:
    """Two responses per subject: an SSE of a stream, of ``/v1/events``, of a Durable
    Stream, a chat's stream, or a long-poll, each counts; the third is 429
    ``too_many_connections`` with Retry-After, and the slot comes back when a response
    ends, however it ends (the client leaves, the stream ends, the long-poll answers)."""
    a, _, _ = limited
    sid, path = "sub-" + secrets.token_hex(4), "subds-" + secrets.token_hex(4)
    alice, bob = token("alice-" + sid), token("bob-" + sid)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as c:
        await publish(c, a.url, sid, {"type": "data-step"})
        octets = {"content-type": "application/octet-stream"}
        r = await c.put(f"/v1/stream/{path}", headers=bearer(PUBLISHER) | octets, content=b"x")
        assert r.status_code == 201, r.text
        routes = [
            f"/v1/streams/{sid}/events",
            f"/v1/events?stream={sid}",
            f"/v1/stream/{path}?offset=-1&live=sse",
        ]
        for first in routes:
            for second in routes:
                async with contextlib.AsyncExitStack() as stack:
                    one, two = await both_held(c, stack, first, second, bearer(alice))
                    assert (one.status_code, two.status_code) == (200, 200)
                    for third in routes:
                        r = await c.get(third, headers=bearer(alice) | address())
                        assert r.status_code == 429, (first, second, third, r.text)
                        assert r.json()["error"] == "too_many_connections"
                        assert int(r.headers["retry-after"]) > 0
                    async with held(c, routes[0], bearer(bob) | address()) as other:
                        assert other.status_code == 200, "another subject has room"

        async def room() -> bool:
            return await status(c, routes[0], bearer(alice) | address()) == 200

        await poll(room, "the slots of the responses the client left", 10, every=0.05)
        # A long-poll holds a slot while it waits, and gives it back when it answers.
        tail = (await c.head(f"/v1/stream/{path}", headers=bearer(alice))).headers
        poll_url = f"/v1/stream/{path}?offset={tail['stream-next-offset']}&live=long-poll"
        polls = [
            asyncio.create_task(c.get(poll_url, headers=bearer(alice) | address()))
            for _ in range(2)
        ]
        await asyncio.sleep(1)
        assert not [p.result().text for p in polls if p.done()], "the long-polls wait"
        assert await status(c, routes[0], bearer(alice) | address()) == 429
        r = await c.post(f"/v1/stream/{path}", content=b"y", headers=bearer(PUBLISHER) | octets)
        assert r.status_code == 204, r.text
        assert [(await p).status_code for p in polls] == [200, 200]
        async with held(c, routes[0], bearer(alice) | address()) as again:
            assert again.status_code == 200, "the answered long-polls gave their slots back"
        # A stream that ends ends its responses: their slots come back.
        async with (
            held(c, routes[0], bearer(alice) | address()) as one,
            held(c, routes[1], bearer(alice) | address()) as two,
        ):
            await publish(c, a.url, sid, {"type": "finish"})
            await one.aread()
            await two.aread()

        await poll(room, "the slots of the responses the end of the stream ended", 10, every=0.05)


async def test_connections_per_address_and_trusted_proxies(
    limited: tuple[Proc, Proc, str],
) -> None:
    """Three responses per address. Front-end A takes the client's address from
    ``X-Forwarded-For`` (its peer, loopback, is a trusted proxy by default); B trusts only
    another proxy, so there every client on loopback is loopback, whatever it claims."""
    a, b, _ = limited
    sids = [f"addr{n}-" + secrets.token_hex(4) for n in range(5)]
    async with httpx.AsyncClient(timeout=30) as c:
        for sid in sids:
            await publish(c, a.url, sid, {"type": "data-step"})

        def url(base: str, n: int) -> str:
            return f"{base}/v1/streams/{sids[n]}/events"

        here = address()
        async with contextlib.AsyncExitStack() as stack:
            for n in range(3):
                r = await stack.enter_async_context(
                    held(c, url(a.url, n), bearer(token(f"a{n}-{sids[0]}")) | here)
                )
                assert r.status_code == 200
            r = await c.get(url(a.url, 3), headers=bearer(token(f"a9-{sids[0]}")) | here)
            assert r.status_code == 429 and r.json()["error"] == "too_many_connections"
            assert "address" in r.json()["message"]
            r = await stack.enter_async_context(
                held(c, url(a.url, 4), bearer(token(f"a8-{sids[0]}")) | address())
            )
            assert r.status_code == 200, "another address has room"
        async with contextlib.AsyncExitStack() as stack:
            for n in range(3):  # each claims another address: B does not believe it
                r = await stack.enter_async_context(
                    held(c, url(b.url, n), bearer(token(f"b{n}-{sids[0]}")) | address())
                )
                assert r.status_code == 200
            r = await c.get(url(b.url, 3), headers=bearer(token(f"b9-{sids[0]}")) | address())
            assert r.status_code == 429, r.text
        assert b.log().count("127.0.0.1 forwards requests (X-Forwarded-For) but is not") == 1
        assert "forwards requests" not in a.log()


async def test_events_counts_as_a_connection_and_its_named_streams_as_viewers(
    limited: tuple[Proc, Proc, str],
) -> None:
    """``/v1/events`` holds a connection slot of its subject and address, and a stream
    it names that is at its viewer limit on this front-end refuses it (503 ``busy``)."""
    a, _, _ = limited
    sid = "evv-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as c:
        await publish(c, a.url, sid, {"type": "data-step"})
        async with contextlib.AsyncExitStack() as stack:
            for n in range(3):  # the stream's three viewers
                r = await stack.enter_async_context(
                    held(c, f"/v1/streams/{sid}/events", bearer(token(f"v{n}")) | address())
                )
                assert r.status_code == 200
            r = await c.get(f"/v1/events?stream={sid}", headers=bearer(token("v9")) | address())
            assert r.status_code == 503 and r.json()["error"] == "busy", r.text
            assert r.headers["retry-after"]


# --- an EventSource is told to come back ---


async def test_a_refused_eventsource_is_told_to_retry_and_others_get_the_status(
    limited: tuple[Proc, Proc, str],
) -> None:
    """Past a limit, a request that looks like a browser's EventSource gets a 200
    ``text/event-stream`` with only a jittered ``retry:`` (1-3 s) and a comment, no
    ``id:`` (its Last-Event-ID stays as it was), and ends; the same request without the
    browser's headers gets 429 (or 503) with Retry-After."""
    a, _, _ = limited
    sid = "es-" + secrets.token_hex(4)
    alice = token("es-" + sid)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as c:
        await publish(c, a.url, sid, {"type": "data-step"})
        url = f"/v1/streams/{sid}/events"
        async with (
            held(c, url, bearer(alice) | address()) as one,
            held(c, url, bearer(alice) | address()) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            retries = set()
            for route in (url, f"/v1/events?stream={sid}"):
                for resume in ({}, {"last-event-id": "1"}):
                    r = await c.get(route, headers=BROWSER | bearer(alice) | resume)
                    assert r.status_code == 200, r.text
                    assert r.headers["content-type"].startswith("text/event-stream")
                    events, retry, comments = parse_sse(r.content)
                    assert events == [] and comments == 1 and b"id:" not in r.content
                    assert retry is not None and 1000 <= retry <= 3000, r.content
                    retries.add(retry)
            for missing in ("sec-fetch-dest", "cache-control", "accept"):
                headers = {k: v for k, v in BROWSER.items() if k != missing}
                r = await c.get(url, headers=headers | bearer(alice))
                assert r.status_code == 429, (missing, r.text)
                assert r.headers["retry-after"] and r.json()["error"] == "too_many_connections"
        assert len(retries) > 1, "the retry is jittered"


# --- forks ---


async def test_forks_copy_at_most_their_budget_per_minute(
    limited: tuple[Proc, Proc, str],
) -> None:
    """``BROADCASTER_FORK_BYTES_PER_MINUTE`` (here 300,000) per payer (a token's
    subject, as here, or an API key), shared by the front-ends: a fork of 120 KB twice,
    then 429 with Retry-After on the other front-end, with nothing made at its path; a
    fork alone larger than the budget is 413; another subject has its own budget."""
    a, b, redis_url = limited
    src = "fsrc-" + secrets.token_hex(4)

    def payer(sub: str) -> dict[str, str]:
        return bearer(token(f"{sub}-{src}", read=[f"{src}*"], publish=(f"{src}*",)))

    def made(path: str) -> bool:
        admin = redis_sync.Redis.from_url(redis_url)
        try:
            return bool(admin.exists(*keys.ds_keys(keys.ds_name(path))))
        finally:
            admin.close()

    async with httpx.AsyncClient(timeout=30) as c:
        octets = {"content-type": "application/octet-stream"}

        async def write(path: str, n: int) -> None:
            for i in range(n):
                method = "PUT" if i == 0 else "POST"
                url = f"{a.url}/v1/stream/{path}"
                r = await c.request(method, url, headers=payer("w") | octets, content=b"a" * 60_000)
                assert r.status_code in (201, 204), r.text

        async def fork(base: str, source: str, name: str, who: dict[str, str]) -> httpx.Response:
            headers = who | {"stream-forked-from": f"/v1/stream/{source}"}
            return await c.put(f"{base}/v1/stream/{source}/{name}", headers=headers)

        await write(src, 2)
        if time.time() % 60 > 45:
            await asyncio.sleep(60 - time.time() % 60 + 0.5)  # all in one clock minute
        assert (await fork(a.url, src, "f1", payer("one"))).status_code == 201
        assert (await fork(b.url, src, "f2", payer("one"))).status_code == 201
        r = await fork(b.url, src, "f3", payer("one"))
        assert r.status_code == 429 and r.json()["error"] == "rate_limited", r.text
        assert 0 < int(r.headers["retry-after"]) <= 60
        assert not made(f"{src}/f3"), "nothing half-made"
        r = await c.get(f"{a.url}/v1/stream/{src}/f3?offset=-1", headers=payer("one"))
        assert r.status_code == 404
        assert (await fork(a.url, src, "f4", payer("two"))).status_code == 201
        big = src + "big"
        await write(big, 6)  # 360,000 bytes
        r = await fork(a.url, big, "f", payer("three"))
        assert r.status_code == 413 and r.json()["error"] == "fork_too_large", r.text
        assert not made(f"{big}/f")


async def _untrusted(c: httpx.AsyncClient, url: str) -> dict[str, float]:
    """``broadcaster_untrusted_forwarded_requests_total`` of a front-end, by header."""
    text = (await c.get(f"{url}/metrics")).text
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "broadcaster_untrusted_forwarded_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["header"]] = sample.value
    assert set(found) == {"x-forwarded-for", "forwarded"}, text
    return found


async def test_forwarded_headers_not_believed_are_told_in_readyz_and_metrics(
    limited: tuple[Proc, Proc, str],
) -> None:
    """B does not trust its peer (loopback): each request whose ``X-Forwarded-For`` it
    does not believe, on the path it answers itself (a stream's viewer) and on the
    app's (a dashboard), counts in ``/metrics`` and shows in ``/readyz``, which stays
    200. A trusts loopback: its ``X-Forwarded-For`` is believed and not counted, but a
    ``Forwarded`` header alone (never read) is."""
    a, b, _ = limited
    sid = "fwd-" + secrets.token_hex(4)
    async with httpx.AsyncClient(timeout=30) as c:
        await publish(c, a.url, sid, {"type": "data-step"})
        before_b, before_a = await _untrusted(c, b.url), await _untrusted(c, a.url)
        viewer = bearer(token(f"f1-{sid}")) | address()
        for path in (f"/v1/streams/{sid}/events", f"/v1/events?stream={sid}"):
            async with held(c, b.url + path, viewer) as r:
                assert r.status_code == 200
        after_b = await _untrusted(c, b.url)
        assert after_b["x-forwarded-for"] >= before_b["x-forwarded-for"] + 2, (before_b, after_b)
        ready = await c.get(f"{b.url}/readyz")
        assert ready.status_code == 200, "a proxy not trusted does not make it unready"
        told = ready.json()["forwarded_untrusted"]
        assert told is not None and told["requests"] >= 2 and told["peers"] == 1, told
        assert 0 <= told["last_seconds_ago"] <= 600
        async with held(c, a.url + f"/v1/streams/{sid}/events", viewer) as r:
            assert r.status_code == 200
        assert await _untrusted(c, a.url) == before_a, "A trusts loopback: believed"
        assert (await c.get(f"{a.url}/readyz")).json()["forwarded_untrusted"] is None
        only_rfc7239 = bearer(token(f"f2-{sid}")) | {"forwarded": "for=198.51.100.9"}
        async with held(c, a.url + f"/v1/streams/{sid}/events", only_rfc7239) as r:
            assert r.status_code == 200
        after_a = await _untrusted(c, a.url)
        assert after_a["forwarded"] >= before_a["forwarded"] + 1, (before_a, after_a)
        assert (await c.get(f"{a.url}/readyz")).json()["forwarded_untrusted"]["peers"] == 1
    assert a.log().count("Forwarded and no X-Forwarded-For, which is not read") == 1
