"""Redis Cluster on real local servers (3 primaries, each with a replica), with real
front-ends and workers configured as the contract says (``REDIS_CLUSTER=true``,
``REDIS_URL`` naming one node): generations on every node arrive complete and in order on
two front-ends, and when a primary is killed mid-stream, front-ends and workers follow
its replica's takeover and viewers resume with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis.crc import key_slot
from redis.exceptions import RedisError

from broadcaster.clients.publisher import Publisher
from broadcaster.core import keys
from broadcaster.core.embedded import ServerNotFound
from broadcaster.core.eventlog import StaleWriter
from tests.support.faults import Viewer, ViewerGaveUp
from tests.support.procs import Proc
from tests.support.topologies import (
    WORKER_ENV,
    LocalCluster,
    Server,
    assert_exact,
    create_all,
    judge_failover,
    kill_mid_stream,
    log_tails,
    start_cluster,
    stored,
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
    return cluster.on_every_primary(per_primary, lambda i: f"{tag}-{i}", keys.log_key)


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


async def test_publish_many_reaches_every_node_once(cluster: LocalCluster) -> None:
    """``Publisher.publish_many`` on a Cluster: one pipeline split by node. Each node's
    script cache is flushed first, so every node answers ``NOSCRIPT``: the appends are
    made again there, once, and every stream holds each event exactly once."""
    ids = ids_on_every_primary(cluster, 4, f"many-{int(time.time())}")
    for s in cluster.servers[: cluster.primaries]:
        with s.client() as c:
            c.script_flush()
    async with Publisher.from_url(cluster.url) as pub:
        first = await pub.publish_many({sid: {"type": "data-progress", "i": 1} for sid in ids})
        second = await pub.publish_many(
            {sid: [{"type": "data-progress", "i": 2}, {"type": "finish"}] for sid in ids}
        )
    assert first == dict.fromkeys(ids, 1) and second == dict.fromkeys(ids, 3)
    for sid in ids:
        assert [e.seq for e in stored(cluster, sid)] == [1, 2, 3], sid


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
    """A front-end already subscribed to one stream's channel when a viewer of another
    stream of the same slot arrives: the second channel joins the same node's
    connection, and its events arrive at once."""
    a = procs[0].url
    first, second = two_ids_in_one_slot()
    async with Publisher.from_url(cluster.url) as pub, httpx.AsyncClient(timeout=30) as client:
        for sid in (first, second):
            await pub.publish(sid, {"type": "data-progress", "pct": 0})
        one, two = Viewer([a], first, patience=20), Viewer([a], second, patience=20)
        watching_first = asyncio.create_task(one.run(client))
        await asyncio.sleep(1.0)  # the first stream's channel is subscribed
        watching_second = asyncio.create_task(two.run(client))
        await asyncio.sleep(1.0)
        await pub.publish(second, [{"type": "data-progress", "pct": 100}, {"type": "finish"}])
        await asyncio.wait_for(watching_second, 20)
        await pub.publish(first, {"type": "finish"})
        await asyncio.wait_for(watching_first, 20)
    assert_exact(cluster, [one, two])


def ids_in_one_slot(n: int, tag: str) -> list[str]:
    """``n`` stream ids whose keys share one slot."""
    by_slot: dict[int, list[str]] = {}
    i = 0
    while True:
        sid = f"{tag}-{i}"
        i += 1
        ids = by_slot.setdefault(key_slot(keys.log_key(sid).encode()), [])
        ids.append(sid)
        if len(ids) == n:
            return ids


def migrate_slot(cluster: LocalCluster, slot: int, source: Server, target: Server) -> int:
    """Move ``slot`` from ``source`` to ``target`` as ``redis-cli --cluster reshard``
    does: IMPORTING, MIGRATING, the keys in batches by MIGRATE, then the slot's new owner
    told to every primary (the target first). Returns the keys moved."""
    with source.client() as src, target.client() as dst:
        src_id, dst_id = src.cluster("myid"), dst.cluster("myid")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while found := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *found)
            moved += len(found)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    for s in cluster.servers:
        if s.alive() and s not in (source, target):
            with contextlib.suppress(redis_sync.RedisError), s.client() as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return moved


async def publish_surely(pub: Publisher, sid: str, event: dict[str, Any], seq: int) -> None:
    """Append the event at ``seq`` once, whatever the migration answers meanwhile (an
    append that failed on the wire may have happened: ``expect_last_event_id`` says)."""
    for _ in range(100):
        try:
            await pub.publish(sid, event, expect_last_event_id=seq - 1)
            return
        except StaleWriter as exc:
            if exc.last_seq >= seq:
                return  # the earlier try went through
            raise
        except RedisError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{sid}: could not append seq {seq}")


async def test_a_slot_migrated_while_its_streams_flow(
    cluster: LocalCluster, procs: list[Proc]
) -> None:
    """A slot holding three live feeds moves to another primary mid-stream. Redis
    takes the slot's sharded channels away from the front-ends' subscribers on the old
    node (``sunsubscribe``); they subscribe on the new one and read from the log what
    was published meanwhile. Every viewer, held open throughout, gets every event once,
    in order; two feeds on other slots flow on untouched."""
    moving = ids_in_one_slot(3, f"migrate-{int(time.time())}")
    slot = key_slot(keys.log_key(moving[0]).encode())
    others = [f"{sid}-elsewhere" for sid in moving[:2]]
    source = cluster.primary_of(keys.log_key(moving[0]))
    target = next(s for s in cluster.servers[: cluster.primaries] if s is not source and s.alive())
    feeds = moving + others
    a, b = procs[0].url, procs[1].url
    async with Publisher.from_url(cluster.url) as pub, httpx.AsyncClient(timeout=30) as client:
        for sid in feeds:
            await publish_surely(pub, sid, {"type": "data-progress", "i": 0}, 1)
        viewers = [
            Viewer([fe], sid, patience=30) for sid in feeds for fe in (a, b) for _ in range(2)
        ]
        running = [asyncio.create_task(v.run(client)) for v in viewers]
        moved = 0
        for i in range(1, 121):
            for sid in feeds:
                await publish_surely(pub, sid, {"type": "data-progress", "i": i}, i + 1)
            if i == 40:
                moved = await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
            await asyncio.sleep(0.02)
        # Both front-ends' subscribers now listen on the slot's new owner, not the old.
        subscribed = {s.port: shard_subscribers(s, moving) for s in (source, target)}
        for sid in feeds:
            await publish_surely(pub, sid, {"type": "finish"}, 122)
        try:
            await asyncio.wait_for(asyncio.gather(*running), 60)
        except (ViewerGaveUp, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{log_tails(procs)}") from None
    assert cluster.primary_of(keys.log_key(moving[0])) is target, "the slot did not move"
    assert moved >= 3 * 2, f"only {moved} keys moved"
    assert_exact(cluster, viewers)
    assert all(len(v.received) == 122 for v in viewers)
    assert subscribed == {source.port: [0, 0, 0], target.port: [2, 2, 2]}, subscribed
    print(f"\nslot {slot} migrated mid-stream: {moved} keys; subscribers by port {subscribed}")


def shard_subscribers(server: Server, stream_ids: list[str]) -> list[int]:
    """How many connections of ``server`` subscribe to each stream's sharded channel."""
    channels = [keys.push_channel(sid) for sid in stream_ids]
    with server.client() as c:
        reply = c.execute_command("PUBSUB", "SHARDNUMSUB", *channels)
    return [int(n) for n in reply[1::2]]


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
