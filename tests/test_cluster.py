"""Redis Cluster on real local servers (3 primaries, each with a replica), with real
front-ends and workers configured as the contract says (``REDIS_CLUSTER=true``,
``REDIS_URL`` naming one node): generations on every node arrive complete and in order on
two front-ends, and when a primary is killed mid-stream, front-ends and workers follow
its replica's takeover and viewers resume with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot

from broadcaster import keys
from broadcaster.embedded import ServerNotFound
from broadcaster.publisher import Publisher
from tests.redis_topologies import (
    LocalCluster,
    judge,
    resume_gaps,
    start_cluster,
    stored_events,
    watch,
)
from tests.support import Proc, start_frontend, start_worker

pytestmark = pytest.mark.anyio

WORKER_ENV = {
    "REDIS_CLUSTER": "true",
    "WORKER_FAKE_DELAY_MS": "40",  # a generation of ~67 events lasts ~3 s
    "WORKER_MERGE_MS": "0",
    "WORKER_LEASE_SECONDS": "2",  # a generation whose append failed is retried soon
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    try:
        c = start_cluster(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1)
    except ServerNotFound as exc:
        pytest.fail(f"these tests need a Redis server: {exc}", pytrace=False)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def procs(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    """Two front-ends and two workers; the front-ends know the cluster by one node."""
    logs: Path = tmp_path_factory.mktemp("cluster-logs")
    started: list[Proc] = []
    # A long block: a stream that joins a slot already being read must wake that read
    # (CLIENT UNBLOCK on its node), or its viewers would wait this long.
    env = {"REDIS_CLUSTER": "true", "BROADCASTER_READ_BLOCK_MS": "60000"}
    try:
        for name in ("a", "b"):
            started.append(start_frontend(cluster.seed, logs, f"cluster-frontend-{name}", env))
        for name in ("1", "2"):
            started.append(start_worker(cluster.seed, logs, f"cluster-worker-{name}", WORKER_ENV))
        yield started
    finally:
        for p in started:
            p.stop()


def ids_on_every_primary(cluster: LocalCluster, per_primary: int, tag: str) -> list[str]:
    """Stream ids whose keys land on each primary ``per_primary`` times."""
    by_port: dict[int, list[str]] = {}
    i = 0
    while len(by_port) < cluster.primaries or min(map(len, by_port.values())) < per_primary:
        sid = f"{tag}-{i}"
        i += 1
        port = cluster.primary_of(keys.log_key(sid)).port
        if len(by_port.setdefault(port, [])) < per_primary:
            by_port[port].append(sid)
    return [sid for ids in by_port.values() for sid in ids]


async def create(client: httpx.AsyncClient, base: str, sid: str, tokens: int) -> None:
    r = await client.post(
        base + "/v1/generations", json={"id": sid, "prompt": f"tell {sid}", "max_tokens": tokens}
    )
    assert r.status_code == 202, r.text


def xread_calls(cluster: LocalCluster) -> int:
    total = 0
    for s in cluster.servers:
        if s.alive():
            with s.client() as c:
                stats = c.info("commandstats")
            total += int(stats.get("cmdstat_xread", {}).get("calls", 0))
    return total


async def test_generations_on_every_node_arrive_complete_on_two_frontends(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    a, b = procs[0].url, procs[1].url
    ids = ids_on_every_primary(cluster, 6, "spread")
    reads_before = xread_calls(cluster)
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(create(client, a, sid, 24) for sid in ids))
        deadline = time.monotonic() + 60
        done = await asyncio.gather(
            *(watch(client, [fe], sid, deadline) for sid in ids for fe in (a, b))
        )
    events = 0
    for w in done:
        stored = stored_events(cluster, w.stream_id)
        assert w.done, f"{w.stream_id}: no [DONE] ({len(w.received)} events)"
        assert [s for s, _ in w.received] == list(range(1, len(stored) + 1))
        assert w.received == stored, f"{w.stream_id}: what the viewer got differs from XRANGE"
        assert w.reconnects == 0
        events += len(stored) // 2  # each stream is counted once per front-end
    reads = xread_calls(cluster) - reads_before
    print(
        f"\ncluster: {len(ids)} generations on 3 primaries, {events} events, "
        f"{reads} XREADs by 2 front-ends = {reads / events:.2f} per event"
    )
    # One XREAD per slot group that has news: at most one per event per front-end, and
    # the blocking reads that time out (5 s) add little over a test this short.
    assert reads <= 2 * events + 4 * len(ids)


async def test_publisher_feeds_on_every_node_reach_both_frontends(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    """``Publisher.from_url`` with a ``redis+cluster://`` URL naming every node."""
    a, b = procs[0].url, procs[1].url
    ids = ids_on_every_primary(cluster, 2, "feed")
    async with Publisher.from_url(cluster.url) as pub, httpx.AsyncClient(timeout=30) as client:
        for sid in ids:
            await pub.publish(sid, {"type": "data-progress", "pct": 0})
        deadline = time.monotonic() + 30
        watches = [
            asyncio.create_task(watch(client, [fe], sid, deadline)) for sid in ids for fe in (a, b)
        ]
        for pct in range(10, 101, 10):
            for sid in ids:
                await pub.publish(sid, {"type": "data-progress", "pct": pct})
        for sid in ids:
            await pub.publish(sid, {"type": "finish"})
        done = await asyncio.gather(*watches)
    for w in done:
        assert w.done
        assert w.received == stored_events(cluster, w.stream_id)
        assert len(w.received) == 12


def two_ids_in_one_slot() -> tuple[str, str]:
    seen: dict[int, str] = {}
    i = 0
    while True:
        sid = f"same-slot-{i}"
        i += 1
        slot = key_slot(keys.log_key(sid).encode())
        if slot in seen:
            return seen[slot], sid
        seen[slot] = sid


async def test_a_stream_joins_a_slot_already_being_read(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    """The front-end is blocked reading one stream of a slot when a viewer of another
    stream of that slot arrives: the read must be woken on the right node and redone."""
    a = procs[0].url
    first, second = two_ids_in_one_slot()
    async with Publisher.from_url(cluster.url) as pub, httpx.AsyncClient(timeout=30) as client:
        for sid in (first, second):
            await pub.publish(sid, {"type": "data-progress", "pct": 0})
        deadline = time.monotonic() + 20  # well under the 60 s block
        watching_first = asyncio.create_task(watch(client, [a], first, deadline))
        await asyncio.sleep(1.0)  # the reader is now blocked on the first stream
        watching_second = asyncio.create_task(watch(client, [a], second, deadline))
        await asyncio.sleep(1.0)
        await pub.publish(second, [{"type": "data-progress", "pct": 100}, {"type": "finish"}])
        got = await watching_second
        assert got.done, f"the second stream's viewer got {got.received} and no [DONE]"
        await pub.publish(first, {"type": "finish"})
        assert (await watching_first).done
    assert got.received == stored_events(cluster, second)


async def test_primary_killed_mid_stream_viewers_resume(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    a, b = procs[0].url, procs[1].url
    ids = ids_on_every_primary(cluster, 3, "failover")
    key = keys.log_key(ids[0])
    victim = cluster.primary_of(key)
    on_victim = [s for s in ids if cluster.primary_of(keys.log_key(s)) is victim]
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(create(client, a, sid, 64) for sid in ids))
        deadline = time.monotonic() + 90
        watches = [
            asyncio.create_task(watch(client, [fe, other], sid, deadline))
            for sid in ids
            for fe, other in ((a, b), (b, a))
        ]
        await asyncio.sleep(1.0)  # mid-stream
        victim.stop(9)
        killed_at = time.monotonic()
        done = await asyncio.gather(*watches)
        statuses = [(await client.get(f"{a}/v1/generations/{sid}")).json()["status"] for sid in ids]
    assert cluster.primary_of(key) is not victim, "the replica did not take over"
    lost = duplicated = told = 0
    for w in done:
        verdict = judge(w, stored_events(cluster, w.stream_id))
        assert w.done or verdict.told, f"{w.stream_id}: neither ended nor told"
        duplicated += verdict.duplicated
        told += verdict.told
        if not verdict.told:
            assert verdict.lost == 0, f"{w.stream_id}: {verdict.lost} events lost silently"
        lost += verdict.lost
    assert duplicated == 0
    followed = [w for w in done if w.stream_id in on_victim]
    gaps = resume_gaps(followed, killed_at)
    assert gaps, "no viewer of the killed primary's streams received anything after the kill"
    print(
        f"\ncluster failover: {len(followed)} viewers on the killed primary's streams; "
        f"first event after the kill: median {statistics.median(gaps):.1f}s, "
        f"max {max(gaps):.1f}s; lost {lost}, duplicated {duplicated}, told {told}, "
        f"reconnects {sum(w.reconnects for w in done)}; statuses {sorted(statuses)}"
    )
    assert all(s in ("completed", "failed") for s in statuses), statuses
