"""Many streams on one connection (``GET /v1/events``), on real front-ends behind the
project's nginx: a dashboard following 200 job streams by prefix, 50 of them created
after it connected, keeps every event of every stream once and in order, through the
SIGKILL of the front-end serving it (it reconnects as EventSource does, with its
``Last-Event-ID``, and lands on the other); and a resume point is checked strictly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from broadcaster.core.embedded import free_port
from broadcaster.dashboard.cursor import REBASE
from tests.support.load import sample
from tests.support.nginx import Nginx, find_nginx
from tests.support.polling import until
from tests.support.procs import Proc, own_redis, parse_sse, start_frontend

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def behind_nginx(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Nginx, list[Proc], str]]:
    logs: Path = tmp_path_factory.mktemp("events")
    redis = own_redis(logs / "redis")
    procs = [start_frontend(redis.url, logs, f"events-{n}") for n in ("a", "b")]
    nginx = Nginx(find_nginx(), logs / "nginx", free_port(), [p.port or 0 for p in procs])
    try:
        nginx.start()
        yield nginx, procs, redis.url
    finally:
        nginx.stop()
        for p in procs:
            p.stop()
        redis.stop()


class Dashboard:
    """An EventSource, as a browser runs one: reads ``/v1/events``, and reconnects with
    the last id it saw whenever the response ends or breaks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_id: str | None = None
        self.got: dict[str, list[int]] = defaultdict(list)
        self.connects = 0
        self.ended = asyncio.Event()

    async def run(self, client: httpx.AsyncClient) -> None:
        while not self.ended.is_set():
            headers = {"last-event-id": self.last_id} if self.last_id else {}
            self.connects += 1
            with contextlib.suppress(httpx.HTTPError):
                async with client.stream("GET", self.url, headers=headers) as r:
                    if r.status_code != 200:
                        raise AssertionError(f"{r.status_code}: {(await r.aread())[:300]!r}")
                    buf = b""
                    async for chunk in r.aiter_raw():
                        buf += chunk
                        cut = buf.rfind(b"\n\n")
                        if cut < 0:
                            continue
                        events, _, _ = parse_sse(buf[: cut + 2])
                        buf = buf[cut + 2 :]
                        for e in events:
                            if e.event is None or e.id is None:
                                continue
                            data = json.loads(e.data)
                            self.got[data["stream"]].append(data["seq"])
                            self.last_id = e.id
            await asyncio.sleep(0.2)  # EventSource's retry


async def publish(client: httpx.AsyncClient, url: str, sid: str, n: int) -> None:
    r = await client.post(f"{url}/v1/streams/{sid}/events", json={"type": "data-step", "n": n})
    assert r.status_code == 201, r.text


async def publish_each(
    client: httpx.AsyncClient, url: str, sids: list[str], n: int, body: object = None
) -> None:
    """Event ``n`` (or ``body``) to each of ``sids``, a few streams at a time: each
    stream's events stay in order (a round ends before the next begins), and a dashboard's
    hundreds of streams are not written one request after another."""
    sem = asyncio.Semaphore(PUBLISHERS)

    async def one(sid: str) -> None:
        async with sem:
            if body is None:
                await publish(client, url, sid, n)
                return
            r = await client.post(f"{url}/v1/streams/{sid}/events", json=body)
            assert r.status_code == 201, r.text

    await asyncio.gather(*(one(sid) for sid in sids))


PUBLISHERS = 8
"""Publishes in flight at once (``publish_each``): well under the client's pool."""


async def test_a_dashboard_of_200_streams_on_one_connection_survives_a_sigkill(
    behind_nginx: tuple[Nginx, list[Proc], str],
) -> None:
    nginx, procs, _ = behind_nginx
    prefix = f"dash{secrets.token_hex(3)}-"
    before = [f"{prefix}{i:03d}" for i in range(150)]
    after = [f"{prefix}{i:03d}" for i in range(150, 200)]
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client:
        await publish_each(client, nginx.url, before, 1)
        board = Dashboard(f"{nginx.url}/v1/events?prefix={prefix}")
        reading = asyncio.create_task(board.run(client))
        await until(
            lambda: len(board.got) == 150, "the 150 existing streams replayed", 20, every=0.05
        )
        await publish_each(client, nginx.url, after, 1)  # created while the connection is open
        for n in (2, 3):
            await publish_each(client, nginx.url, before + after, n)
        await until(lambda: sum(map(len, board.got.values())) == 600, "600 events", 20, every=0.05)
        serving = _serving(nginx, procs)
        serving.stop(signal.SIGKILL)
        killed = time.monotonic()
        await publish_each(client, nginx.url, before + after, 4)
        await publish_each(client, nginx.url, before + after, 0, {"type": "finish"})
        await until(
            lambda: sum(map(len, board.got.values())) == 1000, "1000 events", 30, every=0.05
        )
        back = time.monotonic() - killed
        board.ended.set()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    assert sorted(board.got) == sorted(before + after)
    bad = {s: seqs for s, seqs in board.got.items() if seqs != [1, 2, 3, 4, 5]}
    assert not bad, f"streams with a gap or a repeat: {list(bad.items())[:5]}"
    assert board.connects >= 2
    print(
        f"dashboard: 200 streams (50 created after it connected), 1000 events, each once and "
        f"in order; {board.connects} connections, all back {back:.1f} s after the SIGKILL"
    )


async def test_a_resume_point_is_checked_strictly(
    behind_nginx: tuple[Nginx, list[Proc], str],
) -> None:
    nginx, _, redis_url = behind_nginx
    a, b = (f"strict{secrets.token_hex(3)}-{n}" for n in ("a", "b"))
    async with httpx.AsyncClient(timeout=30) as client:
        for sid in (a, b):
            await publish(client, nginx.url, sid, 1)
        url = f"{nginx.url}/v1/events?stream={a}&stream={b}"
        async with client.stream("GET", url) as r:
            buf = b""
            async for chunk in r.aiter_raw():
                buf += chunk
                if buf.count(b"\nevent:") >= 2:
                    break
        events, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
        last = [e for e in events if e.id][-1].id
        assert last is not None
        for bad, code in (("x" + last, "bad_resume_point"), ("-.0=1", "bad_resume_point")):
            r = await client.get(url, headers={"last-event-id": bad})
            assert r.status_code == 400 and r.json()["error"] == code, r.text
        ahead = last.replace(f"~{a}=1.", f"~{a}=9.")
        r = await client.get(url, headers={"last-event-id": ahead})
        assert r.status_code == 409 and r.json() | {"message": ""} == {
            "error": "resume_point_ahead",
            "stream": a,
            "message": "",
        }, r.text
        admin = redis_sync.Redis.from_url(redis_url)
        try:
            admin.delete(*keys.stream_keys(b))  # its history is gone
        finally:
            admin.close()
        r = await client.get(url, headers={"last-event-id": last})
        assert r.status_code == 409 and r.json()["error"] == "stream_gone", r.text
        assert r.json()["stream"] == b


@contextlib.contextmanager
def lone_frontend(tmp_path: Path, name: str, env: dict[str, str]) -> Iterator[Proc]:
    """A front-end of its own settings, on a Redis of its own."""
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(redis.url, tmp_path, name, env)
    try:
        yield fe
    finally:
        fe.stop()
        redis.stop()


async def test_beyond_the_limit_a_connection_says_so(tmp_path: Path) -> None:
    with lone_frontend(tmp_path, "limit", {"BROADCASTER_EVENTS_MAX_STREAMS": "3"}) as fe:
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(5):
                await publish(client, fe.url, f"lim-{i}", 1)
            named = "&".join(f"stream=x{i}" for i in range(4))
            r = await client.get(f"{fe.url}/v1/events?{named}")
            assert r.status_code == 400 and r.json()["error"] == "too_many_streams"
            async with client.stream("GET", f"{fe.url}/v1/events?prefix=lim-") as resp:
                buf = b""
                async for chunk in resp.aiter_raw():
                    buf += chunk
                    if b"streams-limit" in buf and buf.count(b"\nevent: data-step") >= 3:
                        break
        assert buf.count(b"event: data-step") == 3


async def test_a_connection_following_many_streams_is_one_connection(tmp_path: Path) -> None:
    """``BROADCASTER_MAX_CONNECTIONS`` counts responses: a connection following 3 streams
    is 1 connection and 3 viewers; at the limit the next connection is refused, and one
    closing makes room again."""
    with lone_frontend(tmp_path, "conns", {"BROADCASTER_MAX_CONNECTIONS": "1"}) as fe:
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(3):
                await publish(client, fe.url, f"conn-{i}", 1)
            url = f"{fe.url}/v1/events?prefix=conn-"
            async with client.stream("GET", url) as resp:
                assert resp.status_code == 200
                chunks = resp.aiter_raw()  # read, not left: leaving it would close it
                buf = b""
                while buf.count(b"\nevent: data-step") < 3:
                    buf += await anext(chunks)
                ready = (await client.get(fe.url + "/readyz")).json()
                assert (ready["connections"], ready["viewers"]) == (1, 3), ready
                refused = await client.get(f"{fe.url}/v1/streams/conn-0/events")
                assert refused.status_code == 503 and refused.json()["error"] == "busy"
                exposition = (await client.get(fe.url + "/metrics")).text
                refusals = "broadcaster_viewers_refused_total"
                assert sample(exposition, refusals, 'reason="connections"') == 1
                assert sample(exposition, refusals, 'reason="admission_rate"') == 0
            await until(
                lambda: httpx.get(fe.url + "/readyz").json()["connections"] == 0,
                "closed",
                10,
                every=0.05,
            )
            async with client.stream("GET", f"{fe.url}/v1/streams/conn-0/events") as again:
                assert again.status_code == 200


def _serving(nginx: Nginx, procs: list[Proc]) -> Proc:
    """The front-end holding the dashboard's connection (its viewers, per /readyz: the
    connection is a viewer of each stream it follows; publishing makes none)."""
    del nginx
    for p in procs:
        if httpx.get(p.url + "/readyz").json()["viewers"] > 0:
            return p
    raise AssertionError("no front-end serves the dashboard")


async def test_a_dashboards_ids_are_compact_once_its_replays_are_sent(tmp_path: Path) -> None:
    """A connection following 50 streams replays 50 positions: past ``REBASE`` of them
    it writes a base before the next stream's replay, so no replay's id joins more than
    ``REBASE`` + 1 positions, and once caught up it writes one more: its first live
    event's id names the base and that one stream, not the streams the replays moved."""
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(redis.url, tmp_path, "compact")
    admin = redis_sync.Redis.from_url(redis.url)
    try:
        sids = [f"cmp-{i:02d}" for i in range(50)]
        async with httpx.AsyncClient(timeout=30) as client:
            for sid in sids:
                await publish(client, fe.url, sid, 1)
            url = f"{fe.url}/v1/events?" + "&".join(f"stream={s}" for s in sids)
            async with client.stream("GET", url) as resp:
                chunks = resp.aiter_raw()
                buf = b""
                while buf.count(b"\nevent: data-step") < 50:
                    buf += await anext(chunks)
                replayed, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
                deltas = [len(e.id.split(",")) for e in replayed if e.id]
                assert len(deltas) == 50 and max(deltas) <= REBASE + 1, deltas

                def bases() -> int:
                    return len(list(admin.scan_iter(match=f"{keys.PREFIX}:{{mux*", count=1000)))

                await until(lambda: bases() >= 2, "a base holding all 50 replays", 10, every=0.05)
                await publish(client, fe.url, "cmp-07", 2)
                buf = b""
                while b"\n\n" not in buf.partition(b'"seq":2')[2]:
                    buf += await anext(chunks)
        events, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
        live = [e for e in events if e.event == "data-step" and json.loads(e.data)["seq"] == 2]
        assert len(live) == 1 and live[0].id is not None
        # <base token>.<the stream's index in the base>=<seq>.<tag>, and nothing else
        assert re.fullmatch(r"[0-9a-f]{16}\.\d+=2\.[0-9a-f]+", live[0].id), live[0].id
    finally:
        admin.close()
        fe.stop()
        redis.stop()


async def test_a_connection_is_pinged_only_when_silent(tmp_path: Path) -> None:
    """Keepalives (here every 0.5 s) go to a connection whose streams are quiet, never to
    one that the fan-out writes to meanwhile: the events count as traffic, as they do
    for a single-stream viewer. (The busy connection is read until its last event, the
    quiet one as long: on a slow machine the twenty publishes take longer than 2 s.)"""
    env = {"BROADCASTER_KEEPALIVE_SECONDS": "0.5"}
    last = b'"seq":21,'
    with lone_frontend(tmp_path, "pings", env) as fe:
        async with httpx.AsyncClient(timeout=30) as client:
            for sid in ("busy", "quiet"):
                await publish(client, fe.url, sid, 1)
            got: dict[str, bytes] = {"busy": b"", "quiet": b""}

            async def read(sid: str) -> None:
                async with client.stream("GET", f"{fe.url}/v1/events?stream={sid}") as resp:
                    async for chunk in resp.aiter_raw():
                        got[sid] += chunk
                        if sid == "busy" and last in got[sid]:
                            return

            busy, quiet = (asyncio.create_task(read(sid)) for sid in got)
            for n in range(2, 22):  # an event every 0.1 s for 2 s
                await asyncio.sleep(0.1)
                await publish(client, fe.url, "busy", n)
            try:
                async with asyncio.timeout(30):
                    await busy
            finally:
                for reader in (busy, quiet):
                    reader.cancel()
                await asyncio.gather(busy, quiet, return_exceptions=True)
    assert got["busy"].count(b"event: data-step") == 21
    assert b": ping" not in got["busy"], got["busy"][-300:]
    assert got["quiet"].count(b": ping") >= 3, got["quiet"]
