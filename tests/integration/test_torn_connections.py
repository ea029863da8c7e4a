"""A command whose connection is closed under its write (a pool's ``disconnect`` during
a failover, a peer's reset) fails as redis-py's ``ConnectionError`` and is retried, on
every kind of client the project makes; redis-py 8.1 raises ``AttributeError`` there,
which nothing retried (``connection._WriteGuard``). Real Redis servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis, RedisCluster

from broadcaster.core import connection
from tests.support.topologies import LocalCluster, start_cluster

pytestmark = pytest.mark.anyio


async def test_commands_whose_connections_are_closed_under_them_are_retried(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    translated: list[BaseException] = []
    seen = connection.closed_under_write

    def spy(exc: BaseException) -> bool:
        closed = seen(exc)
        if closed:
            translated.append(exc)
        return closed

    monkeypatch.setattr(connection, "closed_under_write", spy)
    client = connection.command_client(redis_url)
    try:
        await client.ping()
        failed = []
        # The pool is disconnected after 0, 1, ... turns of the loop: at each point of a
        # command's way to its write, one of them as the write is about to happen.
        for turns in range(24):
            setting = asyncio.create_task(client.set(f"torn:{turns}", str(turns)))
            for _ in range(turns):
                await asyncio.sleep(0)
            await client.connection_pool.disconnect()
            try:
                assert await setting is True
            except Exception as exc:
                failed.append((turns, repr(exc)))
        assert failed == []
        assert translated, "no write found its connection closed: the race was not run"
        values = await client.mget([f"torn:{turns}" for turns in range(24)])
        assert values == [str(turns).encode() for turns in range(24)]
    finally:
        await client.aclose()


def test_an_error_of_the_callers_own_is_not_taken_for_a_closed_connection() -> None:
    try:
        None.writelines([b"x"])  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert not connection.closed_under_write(exc)  # raised here, not in redis-py
    assert not connection.closed_under_write(AttributeError("no attribute 'x'"))


def _guarded_kinds(client: Redis) -> set[bool]:
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()
        assert nodes
        made = [c for node in nodes for c in node._connections]
        kinds = {node.connection_class for node in nodes}
    else:
        made = list(client.connection_pool._in_use_connections)
        made += list(getattr(client.connection_pool, "_available_connections", []))
        if client.connection is not None:
            made.append(client.connection)
        kinds = {client.connection_pool.connection_class}
    assert made, "the client made no connection"
    return {isinstance(c, connection._WriteGuard) for c in made} | {
        issubclass(k, connection._WriteGuard) for k in kinds
    }


async def test_single_redis_clients_guard_their_connections(redis_url: str) -> None:
    for client in (
        connection.command_client(redis_url),
        connection.blocking_client(redis_url, 100),
    ):
        try:
            await client.ping()
            assert _guarded_kinds(client) == {True}
        finally:
            await client.aclose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(Path(tmp_path_factory.mktemp("torn-cluster")), primaries=3, replicas=0)
    try:
        yield c
    finally:
        c.stop()


async def test_cluster_clients_guard_their_connections_on_every_node(cluster: LocalCluster) -> None:
    for client in (
        connection.command_client(cluster.url),
        connection.blocking_client(cluster.url, 100),
    ):
        try:
            for n in range(32):  # keys in every primary's slots
                await client.set(f"torn:{n}", "x")
            assert _guarded_kinds(client) == {True}
        finally:
            await client.aclose()


def test_sentinel_clients_guard_their_connections() -> None:
    url = "redis+sentinel://127.0.0.1:1/mymaster"  # nothing is asked before a command
    for client in (connection.command_client(url), connection.blocking_client(url, 100)):
        assert issubclass(client.connection_pool.connection_class, connection._WriteGuard)
