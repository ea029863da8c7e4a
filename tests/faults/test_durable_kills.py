"""Durable Streams writes while a process dies: a producer's front-end killed mid-append
(with live readers on the surviving one), and Redis restarted from its AOF. Every
append a producer was acknowledged is in the stream exactly once, in its order
(``tests/support/durable_producers.py``); each test prints its figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.durable_producers import (
    NEXT,
    Producer,
    SlowReplies,
    assert_exactly_once,
    check,
    check_all,
    create,
    figures,
    kill_with_requests_in_flight,
    read_back,
    stamp,
    until_acked,
    write_until,
)
from tests.support.faults import Cluster
from tests.support.procs import Proc, start_frontend

pytestmark = pytest.mark.anyio

# --- 1. a producer's front-end killed mid-append ----------------------------------------


def writers_on(a: Proc, b: Proc, shared: str, tag: str, n: int) -> list[list[Producer]]:
    """``n`` writers, each a producer on its own stream and one on ``shared``; the even
    ones alternate between the front-ends, the odd ones stick to ``a`` (and move to ``b``
    when ``a`` fails them)."""
    writers = []
    for i in range(n):
        alternate = i % 2 == 0
        own = Producer(f"w{i}", f"{tag}/own-{i}", [a.url, b.url], alternate)
        on_shared = Producer(f"w{i}", shared, [a.url, b.url], alternate)
        writers.append([own, on_shared])
    return writers


@pytest.mark.timeout(120)
async def test_a_producers_frontend_killed_mid_append(tmp_path: Path) -> None:
    """Six writers append to their own streams and a shared one through two front-ends;
    front-end A, whose Redis answers come back 20 ms late (``SlowReplies``), is killed
    (SIGKILL) with requests in flight to it. Its producers retry on B with the same
    ``Producer-Seq``: an append A had made before dying comes back 204, one it had not,
    200. Every acknowledged append is in its stream exactly once."""
    with (
        Cluster(tmp_path, frontends_n=0, workers_n=0) as cluster,
        SlowReplies(cluster.redis_port, 0.02) as far,
    ):
        a = start_frontend(f"redis://127.0.0.1:{far.port}/0", tmp_path, "frontend-a")
        cluster.frontends.append(a)
        b = cluster.add_frontend()
        tag = stamp("ds-fe-kill")
        shared = f"{tag}/shared"
        writers = writers_on(a, b, shared, tag, 6)
        producers = [p for w in writers for p in w]
        paths = sorted({p.path for p in producers})
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            for path in paths:
                await create(client, b.url, path)
            stop = asyncio.Event()
            running = [asyncio.create_task(write_until(client, w, stop)) for w in writers]
            await until_acked(running, producers, 0.0, 10, "10 appends of each producer")
            in_flight = await kill_with_requests_in_flight(a, producers, 4)
            killed_at = time.monotonic()
            before = {p: p.seq for p in producers}
            await until_acked(running, producers, killed_at, 3, "appends after the kill")
            stop.set()
            await asyncio.gather(*running)
            checks = await check_all(client, b.url, paths, producers)
    resumed = [p.acked_at[before[p]] - killed_at for p in producers if p.seq > before[p]]
    figures(
        "ds front-end kill -9",
        producers,
        checks,
        in_flight_at_kill=in_flight,
        first_ack_after_kill_max_s=f"{max(resumed):.2f}",
    )
    assert_exactly_once(checks, producers)
    assert all(p.seq > before[p] for p in producers), "every producer went on after the kill"


# --- 1b. live readers on the surviving front-end ----------------------------------------


@dataclass
class LiveReader:
    """A live reader of ``path`` on ``base`` from -1: SSE (``event: data`` then its
    ``event: control``) or long-poll, following ``streamNextOffset``; it reconnects
    from its offset if a response ends before the stream is closed."""

    base: str
    path: str
    messages: list[Any] = field(default_factory=list)
    offset: str = "-1"
    closed: bool = False
    connects: int = 0
    responses: int = 0

    async def sse(self, client: httpx.AsyncClient) -> LiveReader:
        url = f"{self.base}/v1/stream/{self.path}"
        while not self.closed:
            params = {"offset": self.offset, "live": "sse"}
            async with client.stream("GET", url, params=params) as resp:
                self.connects += 1
                assert resp.status_code == 200, await resp.aread()
                event, data, pending = "", [], []
                async for line in resp.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:])
                    elif not line and data:
                        payload = json.loads("\n".join(data))
                        if event == "data":
                            pending += payload  # kept once its control event arrives
                        elif event == "control":
                            self.messages += pending
                            pending = []
                            self.responses += 1
                            self.offset = payload["streamNextOffset"]
                            self.closed = bool(payload.get("streamClosed"))
                        event, data = "", []
        return self

    async def long_poll(self, client: httpx.AsyncClient) -> LiveReader:
        url = f"{self.base}/v1/stream/{self.path}"
        while not self.closed:
            params = {"offset": self.offset, "live": "long-poll"}
            resp = await client.get(url, params=params, timeout=60)
            self.connects += 1
            assert resp.status_code in (200, 204), resp.text
            if resp.status_code == 200:
                self.messages += resp.json()
                self.responses += 1
            self.offset = resp.headers[NEXT]
            self.closed = resp.headers.get("stream-closed") == "true"
        return self


async def close_stream(client: httpx.AsyncClient, base: str, path: str) -> None:
    """``POST`` with ``Stream-Closed: true`` and no body (again after a failure: closing a
    closed stream is 204 too)."""
    for _ in range(100):
        with contextlib.suppress(httpx.TransportError):
            resp = await client.post(f"{base}/v1/stream/{path}", headers={"stream-closed": "true"})
            if resp.status_code == 204:
                assert resp.headers.get("stream-closed") == "true", resp.headers
                return
            assert resp.status_code >= 500, resp.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"could not close {path}")


@pytest.mark.timeout(120)
async def test_live_readers_on_the_surviving_frontend_during_a_kill(tmp_path: Path) -> None:
    """An SSE reader and a long-poll reader of a shared stream, on front-end B from
    ``offset=-1``, while four producers append to it through A and B and A is killed
    mid-append (as in the test above). Both see every acknowledged append exactly once,
    in order, over one connection (SSE), and end at ``streamClosed`` once the stream is
    closed."""
    with (
        Cluster(tmp_path, frontends_n=0, workers_n=0) as cluster,
        SlowReplies(cluster.redis_port, 0.02) as far,
    ):
        a = start_frontend(f"redis://127.0.0.1:{far.port}/0", tmp_path, "frontend-a")
        cluster.frontends.append(a)
        b = cluster.add_frontend()
        path = f"{stamp('ds-live')}/shared"
        producers = [
            Producer(f"w{i}", path, [a.url, b.url], alternate=i % 2 == 0) for i in range(4)
        ]
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            await create(client, b.url, path)
            sse, poller = LiveReader(b.url, path), LiveReader(b.url, path)
            reading = [
                asyncio.create_task(sse.sse(client)),
                asyncio.create_task(poller.long_poll(client)),
            ]
            stop = asyncio.Event()
            running = [asyncio.create_task(write_until(client, [p], stop)) for p in producers]
            await until_acked(running, producers, 0.0, 10, "10 appends of each producer")
            in_flight = await kill_with_requests_in_flight(a, producers, 2)
            killed_at = time.monotonic()
            await until_acked(running, producers, killed_at, 3, "appends after the kill")
            stop.set()
            await asyncio.gather(*running)
            await close_stream(client, b.url, path)
            await asyncio.wait_for(asyncio.gather(*reading), 30)
            stored, closed = await read_back(client, b.url, path)
    checks = [check(path, stored, producers)]
    figures(
        "ds live readers, front-end kill -9",
        producers,
        checks,
        in_flight_at_kill=in_flight,
        sse_messages=len(sse.messages),
        sse_connects=sse.connects,
        sse_events=sse.responses,
        long_poll_messages=len(poller.messages),
        long_polls=poller.connects,
    )
    assert_exactly_once(checks, producers)
    assert closed
    for reader in (sse, poller):
        assert reader.closed
        assert reader.messages == stored, check(path, reader.messages, producers)
    assert sse.connects == 1


# --- 2. Redis restarted from its AOF ----------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_redis_restarted_from_its_aof(tmp_path: Path, sig: signal.Signals) -> None:
    """Redis with ``appendonly yes`` and ``appendfsync always`` (every write on disk before
    it is answered) is stopped (SIGKILL, or a graceful SIGTERM) while four writers append
    through a front-end, and started again 1 s later on its port from its folder. The
    producers retry through the outage (503s, refused connections); the AOF gives back
    every acknowledged append and every producer's state with it, so a write that was
    made but not answered comes back 204, and none is lost or doubled."""
    with Cluster(
        tmp_path, frontends_n=1, workers_n=0, redis_args=["--appendfsync", "always"]
    ) as cluster:
        fe = cluster.frontends[0]
        with cluster.client() as r:
            config = r.config_get("append*")
        assert config["appendonly"] == "yes" and config["appendfsync"] == "always", config
        tag = stamp(f"ds-aof-{sig.name.lower()}")
        shared = f"{tag}/shared"
        writers = [
            [Producer(f"w{i}", f"{tag}/own-{i}", [fe.url]), Producer(f"w{i}", shared, [fe.url])]
            for i in range(4)
        ]
        producers = [p for w in writers for p in w]
        paths = sorted({p.path for p in producers})
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            for path in paths:
                await create(client, fe.url, path)
            stop = asyncio.Event()
            running = [asyncio.create_task(write_until(client, w, stop)) for w in writers]
            await until_acked(running, producers, 0.0, 10, "10 appends of each producer")
            before = {p: p.seq for p in producers}
            down_at = time.monotonic()
            await asyncio.to_thread(cluster.restart_redis, down_seconds=1.0, sig=sig)
            up_at = time.monotonic()
            await until_acked(running, producers, up_at, 3, "appends after the restart")
            stop.set()
            await asyncio.gather(*running)
            checks = await check_all(client, fe.url, paths, producers)
    after_up = [next((t for t in p.acked_at if t > up_at), up_at) - up_at for p in producers]
    figures(
        f"ds redis restart (AOF always, {sig.name})",
        producers,
        checks,
        acked_before_stop=sum(before.values()),
        down_s=f"{up_at - down_at:.2f}",
        first_ack_after_restart_max_s=f"{max(after_up):.2f}",
    )
    assert_exactly_once(checks, producers)
    assert all(any(p.retries for p in w) for w in writers), "every writer met the outage"
    assert all(p.acked_at[-1] > up_at for p in producers), "every producer went on after it"
