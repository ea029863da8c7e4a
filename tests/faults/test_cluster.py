"""Redis Cluster on real local servers (3 primaries, each with a replica), with real
front-ends and workers configured as the contract says (``REDIS_CLUSTER=true``,
``REDIS_URL`` naming one node): generations on every node arrive complete and in order on
two front-ends, and when a primary is killed mid-stream, front-ends and workers follow
its replica's takeover and viewers resume with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import signal
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot

from broadcaster.clients.publisher import Publisher
from broadcaster.core import keys
from broadcaster.core.embedded import ServerNotFound
from tests.support.faults import Viewer
from tests.support.procs import Proc
from tests.support.topologies import (
    WORKER_ENV,
    LocalCluster,
    assert_exact,
    create_all,
    judge_failover,
    kill_mid_stream,
    start_cluster,
    two_by_two,
)

pytestmark = pytest.mark.anyio


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
    env = {"REDIS_CLUSTER": "true"}
    with two_by_two(cluster.seed, logs, "cluster", env, WORKER_ENV) as started:
        yield started


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


def command_calls(cluster: LocalCluster, *names: str) -> int:
    """Calls of these commands, summed over every live node (INFO commandstats)."""
    total = 0
    for s in cluster.servers:
        if s.alive():
            with s.client() as c:
                stats = c.info("commandstats")
            total += sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)
    return total


READS = ("xread", "xrange", "xrevrange")


async def test_generations_on_every_node_arrive_complete_on_two_frontends(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    a, b = procs[0].url, procs[1].url
    ids = ids_on_every_primary(cluster, 6, "spread")
    reads_before = command_calls(cluster, *READS)
    published_before = command_calls(cluster, "spublish", "publish")
    async with httpx.AsyncClient(timeout=30) as client:
        await create_all(client, a, ids, 24)
        viewers = [Viewer([fe], sid) for sid in ids for fe in (a, b)]
        await asyncio.gather(*(v.run(client) for v in viewers))
    assert_exact(cluster, viewers)
    events = sum(len(v.received) for v in viewers)
    reads = command_calls(cluster, *READS) - reads_before
    print(
        f"\ncluster: {len(ids)} generations on 3 primaries, {events // 2} events, "
        f"{reads} log reads by 2 front-ends for {len(viewers)} viewers"
    )
    # Events are pushed (SPUBLISH on the stream's shard); the log is read by each viewer's
    # replay when it joins (a page or two) and for the odd gap, never per event.
    assert reads <= 4 * len(viewers)
    assert command_calls(cluster, "publish") == 0, "sharded: nothing broadcast to every node"
    assert command_calls(cluster, "spublish", "publish") - published_before > 0


async def test_publisher_feeds_on_every_node_reach_both_frontends(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    """``Publisher.from_url`` with a ``redis+cluster://`` URL naming every node."""
    a, b = procs[0].url, procs[1].url
    ids = ids_on_every_primary(cluster, 2, "feed")
    async with Publisher.from_url(cluster.url) as pub, httpx.AsyncClient(timeout=30) as client:
        for sid in ids:
            await pub.publish(sid, {"type": "data-progress", "pct": 0})
        viewers = [Viewer([fe], sid) for sid in ids for fe in (a, b)]
        running = [asyncio.create_task(v.run(client)) for v in viewers]
        for pct in range(10, 101, 10):
            for sid in ids:
                await pub.publish(sid, {"type": "data-progress", "pct": pct})
        for sid in ids:
            await pub.publish(sid, {"type": "finish"})
        await asyncio.gather(*running)
    assert_exact(cluster, viewers)
    assert all(len(v.received) == 12 for v in viewers)


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
        one, two = Viewer([a], first, patience=20), Viewer([a], second, patience=20)
        watching_first = asyncio.create_task(one.run(client))
        await asyncio.sleep(1.0)  # the reader is now blocked on the first stream
        watching_second = asyncio.create_task(two.run(client))
        await asyncio.sleep(1.0)
        await pub.publish(second, [{"type": "data-progress", "pct": 100}, {"type": "finish"}])
        # Well under the 60 s block: without the wake-up this would give up.
        await asyncio.wait_for(watching_second, 20)
        await pub.publish(first, {"type": "finish"})
        await asyncio.wait_for(watching_first, 20)
    assert_exact(cluster, [one, two])


async def test_primary_killed_mid_stream_viewers_resume(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    ids = ids_on_every_primary(cluster, 3, "failover")
    key = keys.log_key(ids[0])
    victim = cluster.primary_of(key)
    on_victim = {s for s in ids if cluster.primary_of(keys.log_key(s)) is victim}
    run = await kill_mid_stream(
        procs, ids, lambda: victim.stop(signal.SIGKILL), lambda v: v.stream_id in on_victim
    )
    viewers, followed, gaps, statuses = run.viewers, run.followed, run.gaps, run.statuses
    assert cluster.primary_of(key) is not victim, "the replica did not take over"
    lost, duplicated, told = judge_failover(cluster, viewers)
    assert len(gaps) == len(followed), "a viewer of the killed primary's streams got nothing more"
    print(
        f"\ncluster failover: {len(followed)} viewers on the killed primary's streams; "
        f"first event after the kill: median {statistics.median(gaps):.1f}s, "
        f"max {max(gaps):.1f}s; lost {lost}, duplicated {duplicated}, told {told}, "
        f"connections {sum(v.connects for v in viewers)} for {len(viewers)} viewers; "
        f"statuses {sorted(statuses)}"
    )
    assert all(s in ("completed", "failed") for s in statuses), statuses
