"""Which workers live: each worker's liveness subscription, and the look at the job
queues that hands the jobs of dead workers to live ones (``scripts/liveness.lua``).

A process that dies closes its connections, and Redis drops its subscriptions at once; a
frozen one keeps them. So each worker holds a subscription to its own channel
(``keys.alive_channel``) while it lives, and ``Sweeper.look`` declares a worker holding
jobs dead when its subscription is gone and still gone ``SUSPECT_S`` later; its jobs and
generations go to live workers at once (``DeadWorkers``). Frozen or cut-off workers are
taken over when their lease lapses. A worker judges others only after its own
subscription has lasted ``SETTLE_S``. docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection

from broadcaster.core import connection, contain, keys
from broadcaster.core.eventlog import script
from broadcaster.generations.jobs import Job, JobQueue, provider_of

log = logging.getLogger("broadcaster.liveness")

SUSPECT_S = 0.5
"""How long a worker's subscription must stay gone before it is dead: a worker whose
connection was cut (``CLIENT KILL``, a network blip) subscribes again well within it."""
SETTLE_S = 2.0
"""How long a worker's own subscription must have lasted before it judges the others."""
JUDGE_EVERY_S = 0.5
"""One judgement of who is dead per this long, for every worker serving the same
providers together: its cost does not grow with the number of workers looking."""
SCAN_EVERY_S = 30.0
"""Between two looks at every registered worker, which find those that died idle."""
FORGET_S = 60.0
"""A worker found dead holding no job is forgotten this long after."""
CONFIRM_S = 5.0
"""How long a subscription's confirmation may take."""
HOLD_READ_S = 1.0
"""A held subscription's reads wait this long at a time, between looks at ``renew``."""


class Subscription:
    """This worker's liveness subscription: one connection, to the node that holds the
    job queues, subscribed to ``keys.alive_channel`` for as long as the process lives, made
    again whenever it is lost."""

    def __init__(self, url: str, redis: Redis, consumer: str) -> None:
        self.url = url
        self.redis = redis
        self.consumer = consumer
        self.channel = keys.alive_channel(consumer)
        self.sharded = _sharded(redis)
        self.since: float | None = None
        """When the current subscription was confirmed (monotonic); None while there is none."""
        self.confirmed = asyncio.Event()
        """Set at the first confirmation."""
        self._renew = asyncio.Event()

    def settled(self) -> bool:
        """Subscribed for ``SETTLE_S`` at least: its view of the others can be trusted."""
        return self.since is not None and time.monotonic() - self.since >= SETTLE_S

    def renew(self) -> None:
        """Subscribe again, on a new connection: Redis no longer counts this one."""
        self._renew.set()

    async def run(self) -> None:
        """Hold the subscription until cancelled, making it again when it is lost."""
        outage = contain.Outage("keeping the liveness subscription", log, first=0.05, cap=0.5)
        while True:
            try:
                await self._once(outage)
                pause = 0.0  # lost or renewed after it held: at once
            except connection.REDIS_ERRORS as exc:
                pause = outage.failed(exc)
                await self._refresh_slots()
            except Exception:
                contain.loop_failed("worker-liveness", log)
                pause = contain.BACKOFF
            finally:
                self.since = None
            await asyncio.sleep(pause)

    async def _once(self, outage: contain.Outage) -> None:
        client = self._client()
        try:
            await client.initialize()
            conn = cast(AbstractConnection, client.connection)
            await self._subscribe(conn)
            self.since = time.monotonic()
            self.confirmed.set()
            self._renew.clear()
            await self.redis.hset(keys.WORKERS_KEY, self.consumer, f"a{int(time.time() * 1000)}")
            outage.ok()
            await self._hold(conn)
        finally:
            await client.aclose()

    def _client(self) -> Redis:
        """A client of one connection to the node that holds the job queues."""
        target = connection.parse_target(self.url)
        if target is None or target.kind != "cluster":
            # RESP2: the confirmation is a reply (RESP3 makes it a push, which redis-py
            # hands to a handler rather than to the reader).
            return connection.blocking_client(self.url, 0, protocol=2)
        node = cast(RedisCluster, self.redis).get_node_from_key(self.channel)
        if node is None:
            raise ConnectionError("no node holds the job queues' slot")
        options = {**target.options, **connection.blocking_options(0), "protocol": 2}
        client = Redis(
            host=node.host, port=int(node.port), single_connection_client=True, **options
        )
        return connection.guarded(client)

    async def _subscribe(self, conn: AbstractConnection) -> None:
        await conn.send_command("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", self.channel)
        reply = await conn.read_response(timeout=CONFIRM_S)
        if not isinstance(reply, list) or len(reply) < 2 or reply[1] != self.channel.encode():
            raise ConnectionError(f"liveness subscription not confirmed: {reply!r}")

    async def _hold(self, conn: AbstractConnection) -> None:
        """Until the connection says anything (nobody publishes on the channel: a reply is
        Redis taking the subscription away) or fails, or ``renew`` is asked (seen within
        ``HOLD_READ_S``)."""
        while not self._renew.is_set():
            # A read that times out returns None and leaves the connection as it was.
            reply = await conn.read_response(timeout=HOLD_READ_S)
            if reply is not None:
                raise ConnectionError(f"Redis took the liveness subscription away: {reply!r}")

    async def _refresh_slots(self) -> None:
        """On a Cluster, the slot map again: the queues' slot may have moved."""
        if isinstance(self.redis, RedisCluster):
            with contextlib.suppress(*connection.REDIS_ERRORS):
                await self.redis.nodes_manager.initialize()

    async def leave(self) -> None:
        """A clean stop: no longer registered, so nobody looks for this worker."""
        with contextlib.suppress(*connection.REDIS_ERRORS):
            await self.redis.hdel(keys.WORKERS_KEY, self.consumer)


class DeadWorkers:
    """The workers this process found dead lately: a claim of a generation one of them
    holds takes it over at once (``Generations.claim``). Kept for a lease, after which
    its hold has lapsed anyway; at most ``most`` of them."""

    def __init__(self, keep_s: float, most: int = 64) -> None:
        self.keep_s = keep_s
        self.most = most
        self._found: dict[str, float] = {}

    def note(self, consumers: Iterable[str]) -> None:
        now = time.monotonic()
        for consumer in consumers:
            self._found.pop(consumer, None)
            self._found[consumer] = now
        while len(self._found) > self.most:
            del self._found[next(iter(self._found))]

    def current(self) -> list[str]:
        cutoff = time.monotonic() - self.keep_s
        for consumer in [c for c, at in self._found.items() if at < cutoff]:
            del self._found[consumer]
        return list(self._found)


@dataclass(frozen=True, slots=True)
class Look:
    """What one look found."""

    pending: int
    """Jobs held in the queues looked at, by anyone (this worker's own included)."""
    subscribed: bool
    """Redis counts this worker's subscription where the queues are."""
    suspects: int
    """Workers whose subscription is gone, not long enough yet to be dead."""
    dead_left: int
    """Dead workers still holding jobs in these queues (for workers with free slots)."""
    jobs: list[Job] = field(default_factory=list)
    """Taken over: from the dead, and those whose lease lapsed."""
    dead: set[str] = field(default_factory=set)
    """The dead workers the jobs were taken from."""


class Sweeper:
    """One worker's look at the queues it serves (``scripts/liveness.lua``)."""

    def __init__(self, jobs: JobQueue, consumer: str, lease_s: float) -> None:
        self.jobs = jobs
        self.consumer = consumer
        self.lease_ms = int(lease_s * 1000)
        self.advertise_ms = int(lease_s * keys.PROVIDER_TTL_LEASES * 1000)
        self.numsub = "SHARDNUMSUB" if _sharded(jobs.redis) else "NUMSUB"
        served = ",".join(sorted(jobs.providers))
        self._keys = [
            keys.WORKERS_KEY,
            keys.DEAD_WORKERS_KEY,
            f"{keys.LIVENESS_JUDGE_LOCK}:{served}",
            keys.LIVENESS_SCAN_LOCK,
            keys.PROVIDERS_SEEN_KEY,
            *jobs.keys,
        ]
        self._serves = [keys.provider_key(p) for p in jobs.providers]
        self._script = jobs.redis.register_script(script("liveness.lua", "broadcaster.generations"))

    async def look(
        self, count: int, *, judge: bool, lapsed: bool, advertise: bool, scan: bool = False
    ) -> Look:
        """Take over up to ``count`` jobs of dead workers (and, with ``lapsed``, of lapsed
        leases); ``judge``: this worker may find others dead; ``advertise``: refresh the
        providers served, for the front-ends (and this worker's registration); ``scan``:
        look at every registered worker, unless another did within ``SCAN_EVERY_S``."""
        args = [
            self.jobs.group,
            self.consumer,
            count,
            keys.alive_channel(""),
            self.numsub,
            "1" if judge else "0",
            int(SUSPECT_S * 1000),
            self.lease_ms if lapsed else 0,
            self.advertise_ms if advertise else 0,
            int(JUDGE_EVERY_S * 1000),
            int(SCAN_EVERY_S * 1000) if scan else 0,
            int(FORGET_S * 1000),
            len(self.jobs.keys),
            *(self.jobs.providers if advertise else ()),
        ]
        reply = await self._script(keys=[*self._keys, *self._serves], args=args)
        pending, subscribed, suspects, dead_left, *flat = reply
        jobs: list[Job] = []
        dead: set[str] = set()
        for i in range(0, len(flat), 4):
            queue, entry_id, gid, owner = (_text(v) for v in flat[i : i + 4])
            jobs.append(Job(entry_id.encode(), gid, provider_of(queue), queue, True))
            if owner:
                dead.add(owner)
        return Look(int(pending), bool(subscribed), int(suspects), int(dead_left), jobs, dead)


def _sharded(redis: Redis) -> bool:
    """A Cluster: the liveness channel is sharded, so that it lives on the queues' node."""
    return connection.publish_target(redis)[0] == "SPUBLISH"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
