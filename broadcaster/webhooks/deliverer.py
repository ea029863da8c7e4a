"""The deliverer: moves events out of the outboxes, attempts each delivery, retries on
the schedule, and takes over what a dead deliverer left.

Three loops, owned here and ended by ``stop``: ``_move_loop`` (outbox entries into the
deliveries, ``mover``), ``_send_loop`` (new deliveries by consumer group, within
``concurrency``) and ``_retry_loop`` (due retries taken with ``XCLAIM``; another
deliverer's only after ``takeover`` seconds, longer than any attempt, so an attempt in
flight is never doubled). Every ``sweep`` it re-reads the pending deliveries, says it is
alive and reclaims a gone deliverer's outboxes. Nothing here is on the append path.
docs/webhooks.md has the delivery guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis, RedisCluster

from broadcaster.core import connection, contain, keys
from broadcaster.core.durability import Durability
from broadcaster.webhooks import mover as mover_module
from broadcaster.webhooks.compose import Delivery
from broadcaster.webhooks.metrics import WebhookMetrics
from broadcaster.webhooks.mover import Mover, stream_reply
from broadcaster.webhooks.queue import GROUP, KEY, DeliveryQueue, ensure_group
from broadcaster.webhooks.schedule import RetrySchedule
from broadcaster.webhooks.sender import Failure, Sender
from broadcaster.webhooks.settings import WebhookSettings
from broadcaster.webhooks.signing import Signer

log = logging.getLogger("broadcaster.webhooks")

BLOCK_MS = 30_000
"""A blocking read waits this long at most (then it is made again): what an idle
deliverer costs (a read of the outboxes and one of the deliveries per period). A stop
cancels the read: it does not wait for it."""

PENDING_PAGE = 500
"""Pending deliveries looked at per retry round: a long backlog is gone through a page
per round."""

RECLAIM_SECONDS = 3600.0
"""The outboxes are reclaimed at least this often (256 ``XAUTOCLAIM``), whatever was
seen: a floor under the reclaims made when a deliverer is seen gone."""

ALIVE_SWEEPS = 2.5
"""A deliverer says, at every sweep, that it runs for this many sweeps more
(``keys.WEBHOOK_DELIVERERS_KEY``); one silent past that is gone."""

SCHEDULE_MAX = 10_000
"""Due times of its own failed attempts a deliverer keeps (the sweep finds the rest)."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    url: str | None
    """The deployment's receiver, for deliveries addressed to it."""
    secret: str
    schedule: RetrySchedule
    timeout: float = 10.0
    concurrency: int = 16
    poll: float = 1.0
    sweep: float = 60.0

    @classmethod
    def from_settings(cls, s: WebhookSettings) -> DeliveryConfig:
        if s.webhook_secret is None:
            raise ValueError("a deliverer needs BROADCASTER_WEBHOOK_SECRET")
        return cls(
            s.webhook_url,
            s.webhook_secret.get_secret_value(),
            s.retry_schedule(),
            s.webhook_timeout_seconds,
            s.webhook_concurrency,
            s.webhook_poll_seconds,
            s.webhook_sweep_seconds,
        )

    @property
    def takeover(self) -> float:
        """Seconds a delivery another deliverer holds stays idle before this one takes
        it: longer than any attempt of that deliverer can last."""
        return self.timeout + 2.0


def consumer_name() -> str:
    """Unique per process: the group tells apart what each deliverer holds."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Deliverer:
    """``async with Deliverer(...)``: delivering while inside."""

    def __init__(
        self,
        redis: Redis,
        redis_url: str,
        config: DeliveryConfig,
        metrics: WebhookMetrics,
        *,
        grace: float = 5.0,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.grace = grace
        self.redis_url = redis_url
        self.config = config
        self.metrics = metrics
        self.consumer = consumer_name()
        self.queue = DeliveryQueue(redis)
        self.mover = Mover(redis, self.queue, self.consumer, durability)
        self.sender = Sender(config.url, Signer(config.secret), config.timeout, config.concurrency)
        self.cluster = isinstance(redis, RedisCluster)
        self._attempts: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._outages: dict[str, contain.Outage] = {}
        self._readers: dict[str, Redis] = {}
        self._cursor = "-"
        self._due: list[float] = []
        """Monotonic times at which a retry this deliverer knows of is due (a heap)."""
        self._poke = asyncio.Event()
        self._gauges_stale = True
        self._reclaim_at = 0.0
        """Monotonic: when the outboxes are reclaimed next (at once on start)."""
        self._gone: dict[str, float] = {}  # deliverers seen gone -> when (monotonic)
        """Deliverers seen gone, forgotten once the outboxes were reclaimed."""
        self._backlog_seen = keys.WEBHOOK_DELIVERIES_MAX_LEN
        """Deliveries in the stream when last counted (unknown: as if full)."""

    async def __aenter__(self) -> Deliverer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(self.grace)

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("webhooks-move", self._move_loop),
            ("webhooks-send", self._send_loop),
            ("webhooks-retry", self._retry_loop),
        ]
        for name, loop in loops:
            outage = contain.Outage(name, log)
            self._outages[name] = outage
            self._loops.append(asyncio.create_task(_forever(outage, loop), name=name))
        log.info(
            "webhooks: delivering as %s (%s), to %s and generations' own URLs",
            self.consumer,
            "polling the outboxes: Cluster" if self.cluster else "one blocking read",
            self.config.url or "no deployment receiver",
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; give attempts in flight ``grace`` seconds (at most the attempt
        timeout), then cancel them: a cancelled one stays pending and is attempted again
        (the receiver may get it twice, under the same ``webhook-id``)."""
        await contain.cancel_until_ended(self._loops)
        if self._attempts:
            await asyncio.wait(
                list(self._attempts.values()), timeout=min(grace, self.config.timeout)
            )
        for task in list(self._attempts.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*connection.REDIS_ERRORS):
            await forget_consumer(self.redis, [KEY, *self.mover.keys], self.consumer)
        await self.sender.aclose()
        for reader in self._readers.values():
            await reader.aclose()
        log.info("webhooks: deliverer %s stopped", self.consumer)

    # --- the loops ---

    async def _move_loop(self) -> None:
        await self.mover.ensure_groups()
        reader = None if self.cluster else self._reader("outboxes")
        while True:
            if reader is None:
                entries = await self.mover.read_polled()
                if not entries:
                    await asyncio.sleep(self.config.poll)
            else:
                entries = await self.mover.read_blocking(reader, BLOCK_MS)
            await self._move(entries)
            self._outages["webhooks-move"].ok()

    async def _move(self, entries: list[tuple[str, str, dict[str, str]]]) -> None:
        """Move ``entries`` (already read, so pending for this deliverer) once the
        deliveries have room; a move that fails leaves them pending, and the outboxes
        are reclaimed once they can be taken."""
        if not entries:
            return
        try:
            await self._room()
            self.metrics.moved.inc(await self.mover.move(entries))
        except Exception:
            self._reclaim_soon()
            raise
        self._gauges_stale = True

    async def _room(self) -> None:
        """Return once the deliveries hold fewer than their bound (a look per ``poll``).
        Nothing is asked while the count the gauges last read is under half the bound:
        a fresh event's move waits for no extra round trip."""
        if self._backlog_seen < keys.WEBHOOK_DELIVERIES_MAX_LEN // 2:
            return
        while True:
            self._backlog_seen = int(await self.redis.xlen(KEY))
            if self._backlog_seen < keys.WEBHOOK_DELIVERIES_MAX_LEN:
                return
            await asyncio.sleep(self.config.poll)

    def _reclaim_soon(self) -> None:
        at = time.monotonic() + mover_module.RECLAIM_IDLE_MS / 1000 + 1.0
        self._reclaim_at = min(self._reclaim_at, at)
        self._poke.set()

    async def _send_loop(self) -> None:
        await ensure_group(self.redis, KEY)
        reader = self._reader("deliveries")
        while True:
            free = await self._free_slots()
            reply = await reader.xreadgroup(
                GROUP, self.consumer, {KEY: ">"}, count=free, block=BLOCK_MS
            )
            for _key, entries in stream_reply(reply):
                for entry_id, fields in entries:
                    if fields:
                        self._begin(entry_id.decode(), Delivery.from_fields(fields), 1)
            self._outages["webhooks-send"].ok()

    async def _retry_loop(self) -> None:
        """Sleep until the earliest of: a known retry due, the next sweep, a reclaim,
        stale gauges (at most every ``poll``); then do what is due."""
        next_sweep = 0.0
        gauges_at = 0.0
        while True:
            now = time.monotonic()
            wake = min(next_sweep, self._reclaim_at, self._due[0] if self._due else math.inf)
            if self._gauges_stale:
                wake = min(wake, gauges_at)
            if wake > now:
                self._poke.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), min(wake - now, 3600.0))
                if _cancelling():
                    # Python 3.11's wait_for returns the poke's result when the poke and
                    # a cancel land together: the cancel is lost and this loop would run
                    # for ever under a stop that waits for it.
                    raise asyncio.CancelledError
                continue
            sweep = now >= next_sweep
            if sweep or (self._due and self._due[0] <= now):
                while self._due and self._due[0] <= now:
                    heapq.heappop(self._due)
                await self._retry_round()
            if sweep:
                next_sweep = time.monotonic() + self.config.sweep
                await self._look_for_gone()
            if time.monotonic() >= self._reclaim_at:
                await self._move(await self.mover.reclaim())
                await self._forget_reclaimed()
            if sweep or (self._gauges_stale and now >= gauges_at):
                self._gauges_stale = False
                gauges_at = time.monotonic() + self.config.poll
                count, oldest = await self.queue.backlog()
                self._backlog_seen = count
                self.metrics.pending.set(count)
                lag = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
                self.metrics.lag.set(lag)
            self._outages["webhooks-retry"].ok()

    def _schedule(self, delay: float) -> None:
        """A retry this deliverer knows of is due in ``delay`` seconds."""
        if len(self._due) >= SCHEDULE_MAX:
            return  # the sweep finds it
        heapq.heappush(self._due, time.monotonic() + max(0.0, delay))
        self._poke.set()

    async def _look_for_gone(self) -> None:
        """Say this deliverer runs for ``ALIVE_SWEEPS`` sweeps more, and reclaim the
        outboxes if another's such time has passed: it died, and what it read of an
        outbox and never moved has been idle long enough to be taken."""
        now = time.time()
        until = now + ALIVE_SWEEPS * self.config.sweep
        gone = await self.queue.alive(self.consumer, int(until * 1000), int(now * 1000))
        gone = [name for name in gone if name != self.consumer]
        new = sorted(name for name in gone if name not in self._gone)
        if new:
            log.info("webhooks: deliverers gone: %s", ", ".join(new))
            self._gone.update(dict.fromkeys(new, time.monotonic()))
            self._reclaim_at = time.monotonic()

    async def _forget_reclaimed(self) -> None:
        """After a reclaim: forget the deliverers seen gone long enough ago that what
        they read is idle enough to have been taken (``RECLAIM_IDLE_MS``); for the others
        (an entry read just before its deliverer died is not yet), reclaim again once it
        is, not at the hourly floor."""
        now = time.monotonic()
        idle = mover_module.RECLAIM_IDLE_MS / 1000
        done = [name for name, seen in self._gone.items() if now - seen >= idle]
        await self.queue.forget_deliverers(done)
        for name in done:
            del self._gone[name]
        self._reclaim_at = now + RECLAIM_SECONDS
        if self._gone:
            self._reclaim_at = min(self._reclaim_at, min(self._gone.values()) + idle + 1.0)

    async def _retry_round(self) -> None:
        """Attempt the pending deliveries that are due, from the cursor on, one page;
        remember when the earliest of the others is due."""
        page = await self.queue.pending(self._cursor, PENDING_PAGE)
        self._cursor = "-" if len(page) < PENDING_PAGE else f"({page[-1].entry_id}"
        if len(page) == PENDING_PAGE:
            self._schedule(self.config.poll)  # the next page soon
        earliest = math.inf
        for p in page:
            if p.entry_id in self._attempts:
                continue
            wait = self.config.schedule.wait(p.attempts, p.entry_id)
            if p.consumer != self.consumer:
                wait = max(wait, self.config.takeover)
            if p.idle_ms < wait * 1000:
                earliest = min(earliest, wait - p.idle_ms / 1000)
                continue
            if self.free_slots() == 0:
                self._cursor = p.entry_id  # this one first, next round
                self._schedule(self.config.poll)
                return
            delivery = await self.queue.claim(self.consumer, p.entry_id, int(wait * 1000))
            if delivery is not None:
                if p.consumer != self.consumer:
                    log.info("webhooks: took over %s from %s", delivery.webhook_id, p.consumer)
                self._begin(p.entry_id, delivery, p.attempts + 1)
        if earliest < math.inf:
            self._schedule(earliest)

    # --- attempts ---

    def free_slots(self) -> int:
        return self.config.concurrency - len(self._attempts)

    async def _free_slots(self) -> int:
        while self.free_slots() <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return self.free_slots()

    def _begin(self, entry_id: str, delivery: Delivery, attempts: int) -> None:
        task = asyncio.create_task(self._attempt(entry_id, delivery, attempts))
        self._attempts[entry_id] = task

    async def _attempt(self, entry_id: str, delivery: Delivery, attempts: int) -> None:
        try:
            self.metrics.attempts.inc()
            failure = await self.sender.send(delivery)
            if failure is None:
                await self.queue.done(entry_id)
                self.metrics.delivered_now(delivery.webhook_id)
            else:
                await self._failed(entry_id, delivery, attempts, failure)
        except connection.REDIS_ERRORS as exc:
            # Still pending: attempted again on its schedule (perhaps delivered twice).
            log.warning("webhooks: %s: Redis: %s", delivery.webhook_id, exc)
            self._schedule(self.config.takeover)
        except Exception:
            # Still pending, likewise; the other attempts and the loops go on.
            contain.loop_failed("webhooks-attempt", log, delivery.webhook_id)
            self._schedule(self.config.takeover)
        finally:
            self._attempts.pop(entry_id, None)
            self._slot_freed.set()
            self._gauges_stale = True
            self._poke.set()

    async def _failed(
        self, entry_id: str, delivery: Delivery, attempts: int, failure: Failure
    ) -> None:
        self.metrics.failures.labels(failure.reason).inc()
        age = time.time() - int(entry_id.split("-", maxsplit=1)[0]) / 1000
        if failure.final or self.config.schedule.exhausted(age):
            await self.queue.dead(entry_id, attempts, failure.detail)
            self.metrics.dead.inc()
            log.warning(
                "webhooks: %s (%s) to the dead-letter list after %d attempts: %s",
                delivery.webhook_id,
                delivery.type,
                attempts,
                failure.detail,
            )
            return
        await self.queue.touch(self.consumer, entry_id)
        wait = self.config.schedule.wait(attempts, entry_id)
        self._schedule(wait)
        log.info(
            "webhooks: %s attempt %d failed (%s); next in %.1f s",
            delivery.webhook_id,
            attempts,
            failure.detail,
            wait,
        )

    def _reader(self, name: str) -> Redis:
        """The blocking client of one loop: made once, kept across the loop's restarts
        (it reconnects by itself), closed by ``stop``."""
        if name not in self._readers:
            self._readers[name] = connection.blocking_client(self.redis_url, BLOCK_MS)
        return self._readers[name]


async def _forever(outage: contain.Outage, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop`` until cancelled, again after a pause whenever it fails: Redis down,
    or a bug, which is logged with its traceback."""
    name, delay = outage.what, 0.1
    while True:
        started = time.monotonic()
        try:
            await loop()
        except connection.REDIS_ERRORS as exc:
            if _cancelling():
                # The cancel came back as a Redis error (a client that drops the connection
                # of a blocking read it was cancelled in): the loop ends all the same, or the
                # stop that cancelled it would wait for it for ever.
                raise asyncio.CancelledError from exc
            await asyncio.sleep(outage.failed(exc))
            continue
        except Exception:
            if _cancelling():
                raise asyncio.CancelledError from None
            contain.loop_failed(name, log, f"again in {delay:.1f} s")
        await asyncio.sleep(delay)
        delay = 0.1 if time.monotonic() - started > 60 else min(delay * 2, 5.0)


def _cancelling() -> bool:
    """This task has been asked to stop (whatever its last await raised)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def forget_consumer(redis: Redis, stream_keys: list[str], consumer: str) -> None:
    """Remove a stopping deliverer from the groups of ``stream_keys`` if it holds
    nothing in any of them. One that holds entries is kept in every group: they stay its
    until taken over, and the others see it gone (idle) among the deliveries' consumers."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in stream_keys:
            pipe.xpending_range(key, GROUP, min="-", max="+", count=1, consumername=consumer)
        held = await pipe.execute(raise_on_error=False)
    if any(rows != [] for rows in held):
        return  # its time runs out: the others see it gone
    async with redis.pipeline(transaction=False) as pipe:
        for key in stream_keys:
            pipe.xgroup_delconsumer(key, GROUP, consumer)
        pipe.zrem(keys.WEBHOOK_DELIVERERS_KEY, consumer)
        await pipe.execute(raise_on_error=False)


@contextlib.asynccontextmanager
async def delivering(
    settings: WebhookSettings,
    redis: Redis,
    redis_url: str,
    registry: CollectorRegistry,
    *,
    grace: float = 2.0,
    durability: Durability | None = None,
) -> AsyncIterator[Deliverer | None]:
    """A front-end's deliverer while inside, if it runs one: webhooks are configured and
    ``BROADCASTER_WEBHOOK_DELIVERY`` is not false (else None). Its moves are acknowledged
    under ``durability`` (the front-end's)."""
    if not (settings.webhooks_configured() and settings.webhook_delivery):
        yield None
        return
    config = DeliveryConfig.from_settings(settings)
    metrics = WebhookMetrics(registry)
    deliverer = Deliverer(redis, redis_url, config, metrics, grace=grace, durability=durability)
    async with deliverer:
        yield deliverer
