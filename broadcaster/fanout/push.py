"""The front-end's subscriptions to its streams' channels, kept whole through reconnects,
failovers and moved Cluster slots.

A channel is wanted while its stream has viewers here, and lives on one node (on a
Cluster the primary of its slot: ``SSUBSCRIBE`` keeps a message on its shard). One
pub/sub connection per node carries its channels; channels wanted in one turn of the
loop go out in one command. A channel unsubscribed unasked (a dropped connection, an
output buffer limit, a moved slot, a failover) may have missed messages: once back,
``on_recovered`` has the hub read them from the log. Every ``probe_seconds`` each
connection is pinged and each channel's home asked again, and moved if it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextvars import Context
from typing import Any, Protocol, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from broadcaster.core import connection, contain
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.fanout import pubsub
from broadcaster.fanout.pubsub import Address, OnError, OnMessage, OnRead, PubSubProtocol

log = logging.getLogger("broadcaster.push")

BATCH = 500
"""Channels per ``SUBSCRIBE`` command when many streams join at once."""


_refresh_failures = contain.Throttle()
"""Failures to learn where channels live, logged once a minute."""


class Resolver(Protocol):
    """Where the channels live: one server, Sentinel's primary, or a Cluster's shards."""

    subscribe: str
    unsubscribe: str
    sharded: bool
    """Channels live on different nodes (a Cluster): each one's home is checked."""

    def node_of(self, channel: bytes) -> str: ...

    def slot_of(self, channel: bytes) -> int:
        """Channels of one slot may share a command (0 for all on a single server)."""
        ...

    async def address(self, node: str) -> Address: ...

    async def refresh(self) -> None:
        """Learn again where channels live (a Cluster's slot map); rate-limited."""
        ...


def _options(pool: Any) -> dict[str, Any]:
    return {**pool.connection_kwargs, "connection_class": pool.connection_class}


class SingleResolver:
    """One Redis: every channel on one connection, with the command client's login."""

    subscribe, unsubscribe = "SUBSCRIBE", "UNSUBSCRIBE"
    sharded = False

    def __init__(self, commands: Redis) -> None:
        self._address = pubsub.address_from(_options(commands.connection_pool))

    def node_of(self, channel: bytes) -> str:
        return "redis"

    def slot_of(self, channel: bytes) -> int:
        return 0

    async def address(self, node: str) -> Address:
        return self._address

    async def refresh(self) -> None:
        return None


class SentinelResolver(SingleResolver):
    """The primary the Sentinels name now, asked on every connect and every probe."""

    def __init__(self, commands: Redis) -> None:
        self._pool = cast(SentinelConnectionPool, commands.connection_pool)

    async def address(self, node: str) -> Address:
        host, port = await self._pool.sentinel_manager.discover_master(self._pool.service_name)
        return pubsub.address_from(_options(self._pool), host, int(port))


class ClusterResolver:
    """Sharded channels: each on the primary serving its slot, as the cluster client's
    slot map says."""

    subscribe, unsubscribe = "SSUBSCRIBE", "SUNSUBSCRIBE"
    sharded = True
    REFRESH_INTERVAL = 0.5

    def __init__(self, commands: Redis) -> None:
        self._cluster = cast(RedisCluster, commands)
        self._refreshed = 0.0
        self._lock = asyncio.Lock()

    def node_of(self, channel: bytes) -> str:
        return str(self._cluster.nodes_manager.get_node_from_slot(self.slot_of(channel)).name)

    def slot_of(self, channel: bytes) -> int:
        return int(self._cluster.keyslot(channel))

    async def address(self, node: str) -> Address:
        host, _, port = node.rpartition(":")
        return pubsub.address_from(self._cluster.get_connection_kwargs(), host, int(port))

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed < self.REFRESH_INTERVAL:
                return
            self._refreshed = time.monotonic()
            with contextlib.suppress(*REDIS_ERRORS):
                await self._cluster.initialize()  # the first time: the slot map
                await self._cluster.nodes_manager.initialize()


def resolver_for(url: str, commands: Redis) -> Resolver:
    """The resolver for ``url``; ``commands`` is the process's command client
    (``connection.command_client(url)``): its login, TLS and slot map are reused."""
    target = connection.parse_target(url)
    if target is not None and target.kind == "cluster":
        return ClusterResolver(commands)
    if target is not None and target.kind == "sentinel":
        return SentinelResolver(commands)
    return SingleResolver(commands)


class _Node:
    """One home of channels and its pub/sub connection."""

    __slots__ = ("address", "channels", "closed", "confirmed", "conn", "pending", "task")

    def __init__(self) -> None:
        self.channels: set[bytes] = set()
        """Wanted channels that live here."""
        self.confirmed: set[bytes] = set()
        """Subscribed on the current connection."""
        self.pending: set[bytes] = set()
        """To send with the next flush."""
        self.conn: PubSubProtocol | None = None
        self.address: Address | None = None
        self.closed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class _Want:
    __slots__ = ("interrupted", "node", "ready")

    def __init__(self, node: str, ready: asyncio.Future[None]) -> None:
        self.node = node
        self.ready = ready
        """Done at the first confirmation: from then on nothing published is missed."""
        self.interrupted = False
        """Unsubscribed without asking since then: recover once subscribed again."""


class PushSubscriber:
    """Owns the pub/sub connections and their tasks; ``async with`` runs them."""

    def __init__(
        self,
        resolver: Resolver,
        on_message: OnMessage,
        on_read: OnRead,
        on_recovered: Callable[[list[bytes]], None],
        *,
        probe_seconds: float = 5.0,
        timeout: float = 5.0,
        on_error: OnError | None = None,
    ) -> None:
        self.resolver = resolver
        self._on_message = on_message
        self._on_read = on_read
        self._on_recovered = on_recovered
        self._on_error = on_error
        self._probe_seconds = probe_seconds
        self._timeout = timeout
        self._wants: dict[bytes, _Want] = {}
        self._nodes: dict[str, _Node] = {}
        self._homeless: set[bytes] = set()
        self._rehome = asyncio.Event()
        self._flush_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.reconnects = 0

    async def __aenter__(self) -> PushSubscriber:
        await self._refresh()
        self._tasks = [
            asyncio.create_task(self._probe_loop(), name="push-probe", context=Context()),
            asyncio.create_task(self._rehome_loop(), name="push-rehome", context=Context()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Every loop checks ``_stopped`` and is woken here: redis-py can swallow a cancel
        # that lands inside one of its calls (the Sentinel or Cluster lookups).
        self._stopped = True
        self._rehome.set()
        tasks = [*self._tasks, *(n.task for n in self._nodes.values() if n.task)]
        for node in self._nodes.values():
            node.closed.set()
            if node.conn is not None:
                node.conn.abort()
        await contain.cancel_until_ended(tasks, raising=False)
        for want in self._wants.values():
            if not want.ready.done():
                want.ready.cancel()

    async def _refresh(self) -> None:
        """Ask the resolver again; whatever it raises (a Cluster in the middle of a
        failover raises errors that are not ``RedisError``), the loops go on."""
        try:
            await self.resolver.refresh()
        except Exception as exc:
            held = _refresh_failures.due("refresh")  # once a minute while it lasts
            if held is not None:
                log.warning(
                    "pub/sub: cannot learn where channels live yet: %s%s",
                    exc,
                    contain.held_back(held),
                )

    @property
    def connected(self) -> bool:
        """Every node with channels has a connection."""
        return all(n.conn is not None for n in self._nodes.values() if n.channels)

    # --- what the hub asks for ---

    def subscribe(self, channel: bytes) -> asyncio.Future[None]:
        """Want ``channel``; the future is done once Redis confirmed it (waits through
        reconnects: it never fails but on shutdown)."""
        want = self._wants.get(channel)
        if want is None:
            ready = asyncio.get_running_loop().create_future()
            try:
                node = self.resolver.node_of(channel)
            except Exception:  # a Cluster whose slot map is not known yet
                node = ""
            want = self._wants[channel] = _Want(node, ready)
            if node:
                self._home(channel, node)
            else:
                self._homeless.add(channel)
                self._rehome.set()
        return want.ready

    def unsubscribe(self, channel: bytes) -> None:
        want = self._wants.pop(channel, None)
        if want is None:
            return
        if not want.ready.done():
            want.ready.cancel()
        self._homeless.discard(channel)
        node = self._nodes.get(want.node)
        if node is not None:
            self._leave(node, channel)

    # --- homes and connections ---

    def _home(self, channel: bytes, name: str) -> None:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node()
            node.task = asyncio.create_task(
                self._keep(name, node), name=f"push-{name}", context=Context()
            )
        node.channels.add(channel)
        node.pending.add(channel)
        self._schedule_flush()

    def _leave(self, node: _Node, channel: bytes) -> None:
        node.channels.discard(channel)
        node.pending.discard(channel)
        if channel in node.confirmed:
            node.confirmed.discard(channel)
            if node.conn is not None:
                node.conn.unsubscribe(self.resolver.unsubscribe, [channel])

    async def _keep(self, name: str, node: _Node) -> None:
        """Keep a connection to ``name`` while it has channels: connect, subscribe all of
        them again, wait until it closes, and again, with backoff."""
        outage = contain.Outage(f"pub/sub {name}", log, first=0.05, cap=2.0)
        while not self._stopped and (node.channels or node.conn is not None):
            try:
                await self._connect(name, node)
                outage.ok()
            except Exception as exc:
                if isinstance(exc, (*REDIS_ERRORS, TimeoutError)):
                    delay = outage.failed(exc)
                else:
                    contain.loop_failed("pubsub-connect", log, name)
                    delay = contain.BACKOFF
                await self._refresh()
                self._rehome_moved()
                await asyncio.sleep(delay)
                continue
            await node.closed.wait()
            self._disconnected(name, node)
        if self._nodes.get(name) is node and not node.channels:
            del self._nodes[name]

    async def _connect(self, name: str, node: _Node) -> None:
        node.closed.clear()
        address = await self.resolver.address(name)
        async with asyncio.timeout(self._timeout):
            node.conn = await pubsub.connect(
                address,
                self._on_message,
                self._on_read,
                self._lost,
                lambda exc: node.closed.set(),
                on_error=self._on_error,
            )
        node.address = address
        node.pending = set(node.channels)
        self._schedule_flush()

    def _disconnected(self, name: str, node: _Node) -> None:
        node.conn = None
        if self._stopped:
            return
        self.reconnects += 1
        log.warning(
            "pub/sub %s: connection lost; %d channel(s) to resubscribe", name, len(node.channels)
        )
        for channel in node.confirmed:
            want = self._wants.get(channel)
            if want is not None:
                want.interrupted = True
        node.confirmed.clear()

    # --- subscribing ---

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send what is pending, per node and slot, in commands of up to ``BATCH``. A node
        whose sending raised is reconnected, which subscribes all its channels again."""
        self._flush_scheduled = False
        for node in list(self._nodes.values()):
            if node.conn is None or node.conn.closed or not node.pending:
                continue
            try:
                by_slot: dict[int, list[bytes]] = {}
                for channel in node.pending:
                    by_slot.setdefault(self.resolver.slot_of(channel), []).append(channel)
                node.pending.clear()
                for channels in by_slot.values():
                    for i in range(0, len(channels), BATCH):
                        self._send(node, channels[i : i + BATCH])
            except Exception:
                contain.loop_failed("push-subscribe", log)
                node.conn.abort()

    def _send(self, node: _Node, channels: list[bytes]) -> None:
        assert node.conn is not None
        conn = node.conn
        done = conn.subscribe(self.resolver.subscribe, channels)
        done.add_done_callback(lambda fut: self._confirmed(node, conn, channels, fut))

    def _confirmed(
        self, node: _Node, conn: PubSubProtocol, channels: list[bytes], fut: asyncio.Future[None]
    ) -> None:
        if fut.cancelled() or conn is not node.conn:
            return  # the connection is gone; the next one subscribes again
        if fut.exception() is not None:
            # MOVED (the slot left this node) or a refusal: find its home again.
            log.warning("pub/sub: subscribing refused: %s", fut.exception())
            for channel in channels:
                self._lost(channel)
            return
        recovered = []
        for channel in channels:
            want = self._wants.get(channel)
            if want is None or channel not in node.channels:
                conn.unsubscribe(self.resolver.unsubscribe, [channel])  # left meanwhile
                continue
            node.confirmed.add(channel)
            if not want.ready.done():
                want.ready.set_result(None)
            elif want.interrupted:
                recovered.append(channel)
            want.interrupted = False
        if recovered:
            self._on_recovered(recovered)

    # --- channels that lost their home ---

    def _lost(self, channel: bytes) -> None:
        """Redis unsubscribed ``channel`` (a slot moved) or refused it: re-home it."""
        want = self._wants.get(channel)
        if want is None:
            return
        want.interrupted = True
        node = self._nodes.get(want.node)
        if node is not None:
            node.channels.discard(channel)
            node.confirmed.discard(channel)
            node.pending.discard(channel)
        self._homeless.add(channel)
        self._rehome.set()

    def _rehome_moved(self) -> None:
        """Move every channel whose home the resolver now names differently (only on a
        Cluster: elsewhere every channel has the same home, checked by address)."""
        if not self.resolver.sharded:
            return
        for channel, want in self._wants.items():
            try:
                home = self.resolver.node_of(channel)
            except Exception:
                continue
            if home != want.node:
                self._lost(channel)

    async def _rehome_loop(self) -> None:
        while not self._stopped:
            await self._rehome.wait()
            self._rehome.clear()
            try:
                await self._rehome_round()
            except Exception:
                contain.loop_failed("push-rehome", log)
                self._rehome.set()  # what is still homeless, again after a pause
                await asyncio.sleep(contain.BACKOFF)
                continue
            if self._homeless:
                await asyncio.sleep(0.2)
                self._rehome.set()

    async def _rehome_round(self) -> None:
        await self._refresh()
        homeless, self._homeless = list(self._homeless), set()
        for i, channel in enumerate(homeless):
            want = self._wants.get(channel)
            if want is None:
                continue
            try:
                want.node = self.resolver.node_of(channel)
            except Exception:
                self._homeless.add(channel)  # no slot map yet: try again shortly
                continue
            try:
                self._home(channel, want.node)
            except Exception:
                self._homeless.update(homeless[i:])  # homeless still, after a pause
                raise

    # --- probes ---

    async def _probe_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._probe_seconds)
            try:
                await self._refresh()
                self._rehome_moved()
                probes = (self._probe(n, node) for n, node in list(self._nodes.items()))
                await asyncio.gather(*probes)
            except Exception:
                contain.loop_failed("push-probe", log)

    async def _probe(self, name: str, node: _Node) -> None:
        conn = node.conn
        if conn is None or conn.closed:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await conn.ping()
                where = (await self.resolver.address(name)).where
                moved = node.address is not None and where != node.address.where
        except Exception as exc:
            log.warning("pub/sub %s: no answer to a probe (%s); reconnecting", name, exc)
            conn.abort()
            return
        if moved:
            log.warning("pub/sub %s: the primary moved; reconnecting", name)
            conn.abort()
