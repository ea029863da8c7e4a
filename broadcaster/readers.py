"""Where the hub's blocking reads go: the connections behind its shared reader.

A blocking ``XREAD`` over several streams is one command on one connection, and on a
Redis Cluster a multi-key command must keep all its keys in one *slot*: Redis answers
``CROSSSLOT`` otherwise, even when the slots live on the same node. Every key of a stream
carries the hash tag of one of ``keys.SLOT_GROUPS`` groups, so many streams share each
slot by design. Hence the unit of reading is a *slot group*: the streams one ``XREAD``
may cover.

* ``SingleRoute`` (one Redis, or the primary behind Sentinel): one group, one connection,
  exactly the reader of a single Redis.
* ``ClusterRoute``: one group per slot that has watched streams, each with its own
  connection to that slot's primary (never a replica: a viewer that resumes on another
  front-end must not see a replica lagging behind what it was shown). After ``MOVED``,
  ``ASK`` or a dead node the route drops the connection, refreshes the cluster's slot map
  (at most once per ``REFRESH_INTERVAL``) and reconnects to whichever node serves the slot
  now. ``CLIENT UNBLOCK`` goes to the node the blocked connection is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import AskError, MovedError, TryAgainError

from broadcaster import connection

REFRESH_INTERVAL = 0.5
"""Seconds between two refreshes of the slot map: a failover fails every group of the
dead node at once, and one refresh serves them all."""


class ReadRoute(Protocol):
    def group_of(self, key: str) -> int:
        """The slot group of a stream key (0 for everything on a single Redis)."""
        ...

    async def xread(self, group: int, streams: dict[str, str], count: int, block: int) -> Any:
        """One blocking ``XREAD`` for the group, on the group's own connection."""
        ...

    async def client_id(self, group: int) -> int:
        """The id of the group's connection (connecting if needed), for ``unblock``."""
        ...

    async def unblock(self, group: int, client_id: int) -> None:
        """Wake the group's blocked read (``CLIENT UNBLOCK`` on its node)."""
        ...

    async def failed(self, group: int, exc: BaseException) -> None:
        """The group's read failed: drop what must be re-made before the next one."""
        ...

    async def idle(self, group: int) -> None:
        """The group has no streams left: release its connection."""
        ...

    async def aclose(self) -> None: ...


class SingleRoute:
    """One Redis (or the Sentinel-managed primary): one group read by ``reader``."""

    def __init__(self, reader: Redis, control: Redis) -> None:
        self._reader = reader
        self._control = control

    def group_of(self, key: str) -> int:
        return 0

    async def xread(self, group: int, streams: dict[str, str], count: int, block: int) -> Any:
        return await self._reader.xread(streams, count=count, block=block)  # type: ignore[arg-type]

    async def client_id(self, group: int) -> int:
        return int(await self._reader.client_id())

    async def unblock(self, group: int, client_id: int) -> None:
        await self._control.client_unblock(client_id)

    async def failed(self, group: int, exc: BaseException) -> None:
        """redis-py drops the broken connection and re-makes it (through Sentinel: to the
        current primary) on the next call."""

    async def idle(self, group: int) -> None:
        """The one connection is kept for the next stream."""

    async def aclose(self) -> None:
        await self._reader.aclose()


class ClusterRoute:
    """One connection per slot group, to the primary serving that slot."""

    def __init__(self, cluster: Redis, block_ms: int) -> None:
        """``cluster``: a ``RedisCluster`` made by ``connection.command_client`` (owned by
        the caller); it knows the slot map and carries ``CLIENT UNBLOCK``."""
        self._cluster = cast(RedisCluster, cluster)
        self._block_ms = block_ms
        self._conns: dict[int, tuple[str, Redis]] = {}
        self._refreshed = 0.0
        self._refresh_lock = asyncio.Lock()

    def group_of(self, key: str) -> int:
        return int(self._cluster.keyslot(key))

    async def _conn(self, group: int) -> Redis:
        held = self._conns.get(group)
        if held is not None:
            return held[1]
        await self._cluster.initialize()  # the slot map (once; a no-op afterwards)
        node = self._cluster.nodes_manager.get_node_from_slot(group)
        client = connection.node_client(self._cluster, node.host, int(node.port), self._block_ms)
        self._conns[group] = (node.name, client)
        return client

    async def xread(self, group: int, streams: dict[str, str], count: int, block: int) -> Any:
        conn = await self._conn(group)
        return await conn.xread(streams, count=count, block=block)  # type: ignore[arg-type]

    async def client_id(self, group: int) -> int:
        return int(await (await self._conn(group)).client_id())

    async def unblock(self, group: int, client_id: int) -> None:
        held = self._conns.get(group)
        if held is None:
            return
        node = self._cluster.get_node(node_name=held[0])
        if node is not None:
            await self._cluster.execute_command("CLIENT UNBLOCK", client_id, target_nodes=node)

    async def failed(self, group: int, exc: BaseException) -> None:
        await self._drop(group)
        if isinstance(exc, (AskError, TryAgainError)) and not isinstance(exc, MovedError):
            return  # a slot being migrated: retry shortly, the slot map holds until MOVED
        await self._refresh()  # MOVED, a dead node, a demoted primary: ask the cluster

    async def _refresh(self) -> None:
        async with self._refresh_lock:
            if time.monotonic() - self._refreshed < REFRESH_INTERVAL:
                return
            with contextlib.suppress(*connection.REDIS_ERRORS):
                await self._cluster.nodes_manager.initialize()
            self._refreshed = time.monotonic()

    async def idle(self, group: int) -> None:
        await self._drop(group)

    async def _drop(self, group: int) -> None:
        held = self._conns.pop(group, None)
        if held is not None:
            with contextlib.suppress(*connection.REDIS_ERRORS):
                await held[1].aclose()

    async def aclose(self) -> None:
        for group in list(self._conns):
            await self._drop(group)


def route_for(url: str, commands: Redis, block_ms: int) -> ReadRoute:
    """The route for ``url``; ``commands`` is the process's command client (made by
    ``connection.command_client(url)``), used for ``CLIENT UNBLOCK`` and the slot map."""
    target = connection.parse_target(url)
    if target is not None and target.kind == "cluster":
        return ClusterRoute(commands, block_ms)
    return SingleRoute(connection.blocking_client(url, block_ms), commands)
