"""Redis clients, made with the settings that avoid redis-py's known traps.

Short commands share one *blocking* pool of bounded size (a burst of viewers waits for
a connection instead of failing at the limit); the shared reader has its own
connection, a socket timeout above its block time and no hidden retries (it resumes
from its own cursors). URLs are taken as redis-py reads them (passwords, ACL users, TLS
options), plus ``redis+cluster://`` (Redis Cluster, reads from primaries only) and
``redis+sentinel://`` (the primary a Sentinel names, asked again on every new
connection): docs/guides/redis-cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.core import keys

log = logging.getLogger("broadcaster.redis")

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What Redis trouble raises: every loop that must outlive an outage catches these.
redis-py's cluster client raises ``RedisClusterException``, which is not a
``RedisError``, when it cannot map a slot or reach a node, as during a failover; a
reader that caught only ``RedisError`` died there, and its viewers waited for ever."""

AUTH_LOG_INTERVAL = 30.0
"""Seconds between two log lines about refused credentials for the same server and user:
a load balancer polling /readyz would otherwise write one line per poll."""

_auth_logged: dict[tuple[str, str], float] = {}


async def _handshake(conn: AbstractConnection) -> None:
    """redis-py's own handshake (AUTH, CLIENT SETINFO, SELECT), plus a log line when the
    server refuses the credentials. Without it the error reaches only the caller, and a
    front-end's /readyz shows a bare 503. The line names the user and the server, never
    the password."""
    try:
        # No health check (a PING first) on a socket just opened: that is also what
        # redis-py does when it reconnects, and a check here that fails would reconnect
        # and come back here, without end (RecursionError on a plaintext URL to a TLS port).
        await conn.on_connect_check_health(check_health=False)
    except AuthenticationError as exc:
        path = getattr(conn, "path", None)
        host = path or f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        where = f"{host} db {conn.db}"
        user = conn.username or "default"
        now = time.monotonic()
        last = _auth_logged.get((where, user))
        if last is None or now - last >= AUTH_LOG_INTERVAL:
            _auth_logged[(where, user)] = now
            log.error(
                "Redis authentication failed for user %r at %s (%s); "
                "check the user name and password in REDIS_URL",
                user,
                where,
                str(exc).rstrip("."),
            )
        raise


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL."""

    kind: str  # "cluster" or "sentinel"
    nodes: list[tuple[str, int]]
    """Cluster startup nodes, or the Sentinels."""
    options: dict[str, Any]
    """What redis-py reads from a plain URL: credentials, TLS, db, query parameters."""
    service: str = ""


def parse_target(url: str) -> Target | None:
    """The engine a URL names, or None for a plain ``redis://``/``rediss://``/``unix://``.
    ValueError says what is wrong with a URL that is none of them."""
    scheme, sep, rest = url.partition("://")
    base, plus, kind = scheme.partition("+")
    if not sep or not plus:
        try:
            parse_url(url)
        except ValueError as exc:
            raise ValueError(f"REDIS_URL: {exc}") from None
        return None
    if kind not in ("cluster", "sentinel") or base not in ("redis", "rediss"):
        raise ValueError(f"unknown Redis URL scheme {scheme!r}")
    parts = urlsplit(f"{base}://{rest}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = [_host_port(h) for h in hosts.split(",") if h.strip()]
    if not nodes:
        raise ValueError(f"{scheme}:// needs at least one host:port")
    path = [unquote(p) for p in parts.path.split("/") if p]
    service = ""
    if kind == "sentinel":
        if not path:
            raise ValueError("redis+sentinel:// needs the service name: .../<service>[/<db>]")
        service, path = path[0], path[1:]
    db = f"/{path[0]}" if path else ""
    auth = f"{userinfo}@" if userinfo else ""
    query = f"?{parts.query}" if parts.query else ""
    options: dict[str, Any] = dict(parse_url(f"{base}://{auth}localhost{db}{query}"))
    for k in ("host", "port"):
        options.pop(k, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    if kind == "cluster" and options.pop("db", 0):
        raise ValueError("a Redis Cluster has only database 0")
    return Target(kind, nodes, options, service)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {text.strip()!r}")
    return host.strip("[]"), int(port)


class _WriteGuard(AbstractConnection):
    """A connection whose write, when the connection was torn down under it, raises
    redis-py's ``ConnectionError``, which its retries and every loop here handle.

    redis-py 8.1 writes with ``self._writer.writelines`` in a task of its own (the socket
    timeout's): when the connection is closed between the command's start and that
    write (a pool's ``disconnect`` during a failover, a peer's reset), the write raises
    ``AttributeError`` (``'NoneType' object has no attribute 'writelines'``), or, on the
    Pythons whose transport clears its own callbacks on close, ``TypeError``. Neither is a
    ``RedisError``: the command was not retried, and the caller took it for a defect (a
    worker's generation then waited for its lease). redis-py has already closed the
    connection by then; only the error is translated."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except (AttributeError, TypeError) as exc:
            if not closed_under_write(exc):
                raise
            raise RedisConnectionError("the connection closed as the command was written") from exc


def closed_under_write(exc: BaseException) -> bool:
    """Whether ``exc`` is a write to a connection closed under it: something the write
    needed was None, and the error came from redis-py's connection or from asyncio's
    transport or stream (not from the caller's code)."""
    if "NoneType" not in str(exc):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module == "redis.asyncio.connection" or module.startswith("asyncio.")


_guarded_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _guarded_class(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls`` with ``_WriteGuard`` (one class made for each)."""
    if issubclass(cls, _WriteGuard):
        return cls
    made = _guarded_classes.get(cls)
    if made is None:
        made = _guarded_classes[cls] = type(cls.__name__, (_WriteGuard, cls), {})
    return made


def guarded(client: Redis) -> Redis:
    """``client``, whose connections (those it makes from now on) are ``_WriteGuard``'s:
    a plain client's pool, or every node of a Cluster, those found later too."""
    if isinstance(client, RedisCluster):
        nodes = client.nodes_manager  # its kwargs, the client's: every node made later
        kind = _guarded_class(nodes.connection_kwargs.get("connection_class", Connection))
        nodes.connection_kwargs["connection_class"] = kind
        for node in nodes.startup_nodes.values():
            node.connection_class = kind
        return client
    pool = client.connection_pool
    pool.connection_class = _guarded_class(pool.connection_class)
    return client


class _WaitingCluster(RedisCluster):
    """``RedisCluster`` whose callers wait (up to ``wait`` seconds) for a free connection.

    Its own pools hold ``max_connections`` per node and raise ``MaxConnectionsError`` at
    once past that: a burst of viewers would get 503s. At most ``max_connections`` commands
    (or pipelines, one connection per node each) run at once, so no node's pool runs dry."""

    def __init__(self, *args: Any, wait: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._free = asyncio.Semaphore(kwargs["max_connections"])
        self._wait = wait

    @contextlib.asynccontextmanager
    async def connection_slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            raise RedisConnectionError(f"no free Redis connection in {self._wait:g}s") from None
        try:
            yield
        finally:
            self._free.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.connection_slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with cast(_WaitingCluster, self.cluster_client).connection_slot():
            return await super().execute(raise_on_error, allow_redirections)


class _SentinelConnection(_WriteGuard, SentinelManagedConnection):
    """A connection to the primary that asks the Sentinels where it is whenever it
    reconnects. redis-py's own reconnects a client's *dedicated* connection (a blocking
    reader's) to the address it had, so after a failover it would knock on the dead
    primary's door for ever."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]  # the Sentinel-aware one
        await super().send_packed_command(command, check_health)


class _SentinelSSLConnection(_SentinelConnection, SentinelManagedSSLConnection):
    pass


class _SentinelPool(SentinelConnectionPool):
    """Sentinel's pool (connections to the current primary), closing the Sentinel clients
    with itself."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs["connection_class"] = _SentinelSSLConnection if ssl else _SentinelConnection
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """The same, waiting for a free connection at its limit as the plain pool does."""


def _sentinel_client(
    target: Target, pool_class: type[SentinelConnectionPool], **kwargs: Any
) -> Redis:
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.nodes,
        sentinel_kwargs={"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
        **target.options,
    )
    return cast(Redis, sentinel.master_for(target.service, Redis, pool_class, **kwargs))


def command_client(url: str, pool_size: int = 64, timeout: float = 5.0) -> Redis:
    """A client for short commands, on any of the URLs above.

    On a Cluster it is a ``RedisCluster`` (typed as ``Redis``: it offers the same commands,
    and every command the project sends touches one slot), with ``pool_size``
    connections per node and callers that wait for a free one."""
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "driver_info": _driver_info(),
    }
    target = parse_target(url)
    if target is not None and target.kind == "cluster":
        cluster = _WaitingCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            max_connections=pool_size,
            wait=timeout * 2,
            # A few tries over about a second: enough to follow MOVED and a refreshed
            # slot map; a failover in progress surfaces as an error (503) meanwhile.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            **target.options,
            **kwargs,
        )
        return guarded(cast(Redis, cluster))
    kwargs.update(
        redis_connect_func=_handshake,
        max_connections=pool_size,
        timeout=timeout * 2,  # waiting for a free connection
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
    )
    if target is not None:
        return _sentinel_client(target, _BlockingSentinelPool, **kwargs)
    pool = BlockingConnectionPool.from_url(url, **kwargs)
    return guarded(Redis.from_pool(pool))  # owns the pool: aclose() closes its connections


def blocking_client(url: str, block_ms: int, **options: Any) -> Redis:
    """A single-connection client for one blocking reader (XREAD / XREADGROUP BLOCK).

    Through Sentinel, the connection is re-made to the new primary after a failover. On a
    Cluster, a ``RedisCluster`` without retries, for a reader of one key. ``options``: more
    of redis-py's (``protocol=2``, for a subscriber that reads its replies itself)."""
    kwargs = {**blocking_options(block_ms), **options}
    target = parse_target(url)
    if target is None:
        return guarded(Redis.from_url(url, single_connection_client=True, **kwargs))
    if target.kind == "sentinel":
        pool = _sentinel_client(target, _SentinelPool, **kwargs).connection_pool
        client = Redis(connection_pool=pool, single_connection_client=True)
        client.auto_close_connection_pool = True
        return client
    # The worker's XREADGROUP on the job queue: one key, so redis-py routes it to that
    # key's primary (following MOVED).
    kwargs.pop("redis_connect_func")
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
        max_connections=2,
        **target.options,
        **kwargs,
    )
    return guarded(cast(Redis, cluster))


@functools.cache
def _driver_info() -> DriverInfo:
    """What a connection tells Redis of its library (``CLIENT SETINFO``), found once:
    redis-py otherwise reads its package metadata from disk for every connection it
    makes, which a burst of viewers pays for while the pool grows."""
    return DriverInfo()


def blocking_options(block_ms: int) -> dict[str, Any]:
    """Connection options of a blocking reader: a socket timeout above the block time and
    no hidden retries (the reader handles errors and resumes from its own cursors)."""
    return {
        "driver_info": _driver_info(),
        "socket_timeout": block_ms / 1000 + 5.0,
        "socket_connect_timeout": 5.0,
        "retry": Retry(NoBackoff(), 0),
        "redis_connect_func": _handshake,
    }


async def publish_wake(client: Redis, name: str, message: str) -> None:
    """``message`` on the wake channel of ``name`` (``keys.wake_channel``), which every
    front-end holds (``fanout/wakes.py``), the way appends are published."""
    publish, db = publish_target(client)
    channel = keys.wake_channel(name, db)
    if publish == "SPUBLISH":
        await client.spublish(channel, message)
    else:
        await client.publish(channel, message)


def publish_target(client: Redis) -> tuple[str, int]:
    """How appends through ``client`` are published, and the database they belong to:
    ``SPUBLISH`` on a Cluster (sharded pub/sub, Redis 7 or Valkey: the message stays on
    the stream's shard), ``PUBLISH`` elsewhere (any Redis)."""
    if isinstance(client, RedisCluster):
        return "SPUBLISH", 0
    pool = getattr(client, "connection_pool", None)
    db = getattr(pool, "connection_kwargs", {}).get("db", 0)
    return "PUBLISH", int(db or 0)
