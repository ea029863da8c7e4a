"""Scenario 8 of docs/reliability.md, load with churn: the engine shared by the short run in
the test suite (tests/faults/test_churn.py) and the soak
(``python -m tests.faults.soak --minutes 5``).

A ``Cluster`` (one Redis, two front-ends, two workers with the fake provider) keeps
``generations`` generations in flight, while ``viewers`` EventSource-like viewers each
watch a recent generation, drop their connection at random, wait a moment and reconnect
with ``Last-Event-ID`` to a random front-end, until their stream ends; then they pick
another. Every finished viewing is checked against ``XRANGE`` at once (the stream may
expire later). Around the run: RSS of every process sampled every few seconds, and open
fds, Redis connections and the front-ends' asyncio tasks before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import redis as redis_sync

from broadcaster.core import keys
from tests.support.faults import Cluster, Verdict, Viewer, stored_events, verdict
from tests.support.load import RssCurve, metric, open_fds, redis_clients
from tests.support.sse_transport import SSETransport

WORKER_ENV = {
    "WORKER_CONCURRENCY": "40",  # two workers: 80 slots, so 50 generations all run
    "WORKER_FAKE_DELAY_MS": "300",  # ~20 s and ~70 events per generation (churn_cluster's)
    "WORKER_MERGE_MS": "0",
}
REDIS_POOL = 16
STREAM_ENV = {
    "BROADCASTER_ENDED_TTL": "900",
    "BROADCASTER_REDIS_POOL_SIZE": str(REDIS_POOL),
    "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0",  # every viewer comes from 127.0.0.1
}
"""Ended streams are kept 15 minutes (a viewing slowed down by a starved test process must
still find its stream to be checked); a small command pool per process, so that its
connections plateau early and a leak stands out."""


@dataclass
class Figures:
    """What a churn run measured."""

    seconds: float
    generations: int = 0
    viewings: int = 0
    connections: int = 0
    events_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    not_exact: list[Verdict] = field(default_factory=list)
    longest_viewing: float = 0.0
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    rss: RssCurve | None = None

    def lines(self) -> list[str]:
        out = [
            f"[churn] seconds={self.seconds:.0f} generations={self.generations} "
            f"viewings={self.viewings} connections={self.connections} "
            f"events_checked={self.events_checked} lost={self.lost} "
            f"duplicated={self.duplicated} not_exact={len(self.not_exact)} "
            f"longest_viewing_s={self.longest_viewing:.0f}",
            "before: " + " ".join(f"{k}={v}" for k, v in self.before.items()),
            "after:  " + " ".join(f"{k}={v}" for k, v in self.after.items()),
        ]
        if self.rss is not None:
            out += ["RSS (MB):", self.rss.table()]
        return out


def counts(cluster: Cluster) -> dict[str, int]:
    """Open fds per process, Redis connections and the front-ends' asyncio tasks."""
    figures = {}
    for proc in [*cluster.frontends, *cluster.workers]:
        figures[f"{proc.name}_fds"] = open_fds(proc.pid)
    for proc in cluster.frontends:
        figures[f"{proc.name}_tasks"] = int(metric(proc.url, "broadcaster_asyncio_tasks"))
    with cluster.client() as r:
        figures["redis_clients"] = redis_clients(r) - 1  # less this very connection
    return figures


@dataclass
class Churn:
    cluster: Cluster
    seconds: float
    generations: int = 50
    viewers: int = 500
    seed: int = 1
    figures: Figures = field(init=False)
    _recent: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    _stop: float = 0.0

    def __post_init__(self) -> None:
        self.figures = Figures(self.seconds)
        self._rng = random.Random(self.seed)

    async def run(self, rss_interval: float = 3.0) -> Figures:
        f = self.figures
        pids = {"redis": _redis_pid(self.cluster)}
        pids |= {p.name: p.pid for p in [*self.cluster.frontends, *self.cluster.workers]}
        f.before = await asyncio.to_thread(counts, self.cluster)
        f.rss = RssCurve(pids, interval=rss_interval).start()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
        timeout = httpx.Timeout(30, connect=5)
        redis = self.cluster.client()
        try:
            async with (
                contextlib.AsyncExitStack() as stack,
                httpx.AsyncClient(timeout=timeout, transport=SSETransport(limits=limits)) as client,
                anyio.create_task_group() as tg,
            ):
                self._stop = time.monotonic() + self.seconds
                tg.start_soon(self._producer, client, redis)
                while not self._recent:  # noqa: ASYNC110 -- the first generations
                    await asyncio.sleep(0.05)
                # Ten viewers per client: httpx's connection pool does work proportional to
                # its open connections on every request, so one client for 500 streams
                # would measure the pool rather than the servers.
                # One TLS context for all (httpx loads the CA bundle for each client it
                # makes otherwise: 50-200 ms of blocked event loop apiece).
                tls = ssl.create_default_context()
                for first in range(0, self.viewers, 10):
                    shard = await stack.enter_async_context(
                        httpx.AsyncClient(
                            timeout=timeout, transport=SSETransport(limits=limits, verify=tls)
                        )
                    )
                    for n in range(first, min(first + 10, self.viewers)):
                        tg.start_soon(self._viewer, shard, redis, n)
        finally:
            redis.close()
        await asyncio.sleep(3)  # closed connections are reaped, idle tasks end
        f.rss.stop()
        f.after = await asyncio.to_thread(counts, self.cluster)
        return f

    async def _producer(self, client: httpx.AsyncClient, redis: redis_sync.Redis) -> None:
        """Keeps ``generations`` generations in flight until the end of the run."""
        in_flight: list[str] = []
        while time.monotonic() < self._stop:
            missing = self.generations - len(in_flight)
            created = await asyncio.gather(*(self._create(client) for _ in range(missing)))
            in_flight += created
            self._recent.extend(created)
            await asyncio.sleep(1.0)
            statuses = await asyncio.to_thread(_statuses, redis, in_flight)
            in_flight = [g for g, s in zip(in_flight, statuses, strict=True) if s in _RUNNING]

    async def _create(self, client: httpx.AsyncClient) -> str:
        gid = "churn-" + secrets.token_hex(8)
        base = self.cluster.urls[self.figures.generations % 2]
        self.figures.generations += 1
        for _ in range(3):
            try:
                r = await client.post(f"{base}/v1/generations", json={"prompt": gid, "id": gid})
            except httpx.TransportError:
                # A kept-alive connection the server closed as it was reused: try again
                # (the id is ours, so a repeat of a request that did land answers 409).
                await asyncio.sleep(0.1)
                continue
            assert r.status_code in (202, 409), r.text
            return gid
        raise AssertionError(f"could not create generation {gid}")

    async def _viewer(self, client: httpx.AsyncClient, redis: redis_sync.Redis, n: int) -> None:
        """Watches recent generations one after another, with random disconnects, until
        the end of the run; the last viewing goes on to its stream's end."""
        rng = random.Random(self.seed * 100_003 + n)
        await asyncio.sleep(rng.uniform(0, 2))  # do not all connect at once
        while time.monotonic() < self._stop:
            gid = rng.choice(list(self._recent)[-self.generations :])
            viewer = Viewer(self.cluster.urls, gid, patience=60)
            began = time.monotonic()
            while not viewer.outcome:
                viewer.urls = rng.sample(self.cluster.urls, len(self.cluster.urls))
                if time.monotonic() < self._stop:
                    with anyio.move_on_after(rng.uniform(0.5, 5.0)):
                        await viewer.run(client)
                    if not viewer.outcome:
                        await asyncio.sleep(rng.uniform(0.0, 1.0))  # dropped: reconnect
                else:
                    await viewer.run(client)  # the run is over: read to the end
            elapsed = time.monotonic() - began
            self.figures.longest_viewing = max(self.figures.longest_viewing, elapsed)
            await self._check(redis, viewer)

    async def _check(self, redis: redis_sync.Redis, viewer: Viewer) -> None:
        v = verdict(viewer, await asyncio.to_thread(stored_events, redis, viewer.stream_id))
        f = self.figures
        f.viewings += 1
        f.connections += viewer.connects
        f.events_checked += v.received
        f.lost += len(v.lost)
        f.duplicated += len(v.duplicated)
        if not (v.exact and v.outcome in ("done", "204")):
            f.not_exact.append(v)


_RUNNING = {b"queued", b"running", None}


def _statuses(redis: redis_sync.Redis, gids: list[str]) -> list[bytes | None]:
    with redis.pipeline(transaction=False) as pipe:
        for gid in gids:
            pipe.hget(keys.meta_key(gid), "status")
        return pipe.execute()


def _redis_pid(cluster: Cluster) -> int:
    with cluster.client() as r:
        return int(r.info("server")["process_id"])


def churn_cluster(root: Path, token_ms: int = 300) -> Cluster:
    """Generations of about 70 events, one every ``token_ms``."""
    return Cluster(
        root,
        frontend_env=STREAM_ENV,
        worker_env={**WORKER_ENV, **STREAM_ENV, "WORKER_FAKE_DELAY_MS": str(token_ms)},
    )
