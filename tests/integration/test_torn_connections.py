"""A command whose connection is closed under its write (a pool's ``disconnect`` during
a failover, a peer's reset) fails as redis-py's ``ConnectionError`` and is retried, on
every kind of client the project makes; redis-py 8.1 raises ``AttributeError`` there,
which nothing retried (``connection._WriteGuard``). Real Redis servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.core import connection
from tests.support.topologies import LocalCluster, start_cluster

pytestmark = pytest.mark.anyio

TURNS = 60


async def test_a_command_whose_connection_is_closed_before_its_write_is_retried(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault made where it happens: the connection is disconnected (as a failover's
    ``pool.disconnect`` does to the connections in use) just before redis-py's write."""
    write = AbstractConnection._send_packed_command
    closed: list[AbstractConnection] = []

    async def closed_first(conn: AbstractConnection, command: Iterable[bytes]) -> None:
        if not closed:
            closed.append(conn)
            await conn.disconnect()
        await write(conn, command)

    monkeypatch.setattr(AbstractConnection, "_send_packed_command", closed_first)
    client = connection.command_client(redis_url)
    try:
        assert await client.set("torn", "command") is True  # retried on a new connection
        assert await client.get("torn") == b"command"
        assert len(closed) == 1
    finally:
        await client.aclose()
    # A blocking reader has no retries (it resumes from its own cursors): the error is
    # one it handles, a Redis connection's.
    closed.clear()
    reader = connection.blocking_client(redis_url, 100)
    try:
        with pytest.raises(RedisConnectionError, match="closed as the command was written"):
            await reader.set("torn", "reader")
        assert len(closed) == 1
        assert await reader.get("torn") == b"command"
    finally:
        await reader.aclose()


async def test_commands_whose_connections_are_closed_under_them_are_retried(
    redis_url: str,
) -> None:
    client = connection.command_client(redis_url)
    try:
        await client.ping()
        failed = []
        # The pool is disconnected after 0, 1, ... turns of the loop: at each point of a
        # command's way to its write (one of them as the write is about to happen, which
        # turn depends on the loop and on what ran before in the process).
        for turns in range(TURNS):
            setting = asyncio.create_task(client.set(f"torn:{turns}", str(turns)))
            for _ in range(turns):
                await asyncio.sleep(0)
            await client.connection_pool.disconnect()
            try:
                assert await setting is True
            except Exception as exc:
                failed.append((turns, repr(exc)))
        assert failed == []
        values = await client.mget([f"torn:{turns}" for turns in range(TURNS)])
        assert values == [str(turns).encode() for turns in range(TURNS)]
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
