"""Taking generation jobs from the queues of the providers this worker serves, and
holding them while they run.

Three loops, owned by ``Worker.run``: *take* (one blocking ``XREADGROUP`` over every
queue served, never more than the free slots; a read that brings more keeps them held
until a slot frees), *sweep* (``generations.liveness.Sweeper``: dead workers' jobs at
once, lapsed leases every half lease, the providers served for the front-ends) and
*hold* (every third of a lease, the hold on the generations running here, then on their
jobs: a job idle for a lease then always means a lapsed hold). docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from broadcaster.core import connection, contain, keys
from broadcaster.generations.jobs import Job, JobQueue
from broadcaster.generations.liveness import (
    SCAN_EVERY_S,
    SUSPECT_S,
    DeadWorkers,
    Look,
    Subscription,
    Sweeper,
)
from worker.metrics import WorkerMetrics

log = logging.getLogger("worker")

BLOCK_MS = 10_000
"""How long one ``XREADGROUP`` waits for new jobs (the reader's socket timeout allows it).
Long: the takeovers are the sweep's, on another connection, so nothing waits behind it."""


class Slots(Protocol):
    """Where taken jobs go: the generations running here."""

    async def free_slots(self) -> int:
        """Wait until at least one generation more may run; how many may."""
        ...

    def free_now(self) -> int:
        """How many generations more may run now (0 when none may)."""
        ...

    def start(self, job: Job) -> None: ...


@dataclass(frozen=True, slots=True)
class Liveness:
    """How this worker finds dead workers: its own subscription (None: by leases alone,
    ``WORKER_LIVENESS=lease``), the dead it found (for its claims), how often it looks."""

    subscription: Subscription | None
    dead: DeadWorkers
    every_s: float = 1.0


class JobTaker:
    """Takes jobs for one consumer of the queues' group, and refreshes its hold on them."""

    def __init__(
        self,
        jobs: JobQueue,
        consumer: str,
        lease_seconds: float,
        metrics: WorkerMetrics | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.jobs = jobs
        self.metrics = metrics
        self.consumer = consumer
        self.lease_seconds = lease_seconds
        self.liveness = liveness or Liveness(None, DeadWorkers(lease_seconds))
        self.sweeper = Sweeper(jobs, consumer, lease_seconds)
        self._group_ready = False
        self._next_lapsed = 0.0
        self._next_advert = 0.0
        self._next_scan = 0.0
        self._waiting: deque[Job] = deque()
        """Taken beyond the free slots; bounded by the number of queues read, and by the
        free slots at a sweep."""

    async def advertise(self) -> None:
        """Tell the front-ends, for a few leases, which providers this worker serves."""
        ttl_ms = int(self.lease_seconds * keys.PROVIDER_TTL_LEASES * 1000)
        await self.jobs.advertise(ttl_ms)
        self._next_advert = time.monotonic() + self.lease_seconds / 3

    async def take_loop(self, reader: Redis, slots: Slots) -> None:
        backoff = 0.1
        outage = contain.Outage("taking jobs", log)
        while True:
            free = await slots.free_slots()
            if self._waiting:
                for _ in range(min(free, len(self._waiting))):
                    slots.start(self._waiting.popleft())
                continue
            try:
                taken = await self._take(reader, free)
                backoff = 0.1
                outage.ok()
            except connection.REDIS_ERRORS as exc:
                if "NOGROUP" in str(exc):
                    # Redis answers, but lost the queue's group (restarted empty, or
                    # flushed): made again on the next round, which comes at once.
                    self._group_ready = False
                    await asyncio.sleep(0.1)
                    continue
                await asyncio.sleep(outage.failed(exc))
                continue
            except Exception:
                contain.loop_failed("worker-take", log)
                await asyncio.sleep(max(backoff, contain.BACKOFF))
                backoff = min(backoff * 2, 5.0)
                continue
            self._start(slots, taken)

    def _start(self, slots: Slots, jobs: list[Job]) -> None:
        """Start what the free slots allow now; the rest waits here (the sweep may have
        filled slots while a read was blocked)."""
        for job in jobs:
            if slots.free_now() > 0:
                slots.start(job)
            else:
                self._waiting.append(job)

    async def _take(self, reader: Redis, free: int) -> list[Job]:
        if not self._group_ready:
            await self.jobs.ensure_group()
            self._group_ready = True
        taken = await self.jobs.take(reader, self.consumer, free, BLOCK_MS)
        if self.metrics is not None:
            self.metrics.taken(taken)  # new jobs only: a takeover's wait was not in a queue
        return taken

    async def sweep_loop(self, slots: Slots, held: Callable[[], list[Job]]) -> None:
        """Look for the jobs of dead workers and of lapsed leases, and advertise, until
        cancelled: every ``every_s``, half that while a worker is suspected, twice that
        while nobody else holds a job."""
        outage = contain.Outage("looking for the jobs of lost workers", log)
        every = self.liveness.every_s
        while True:
            pause = every
            try:
                look = await self._sweep(slots)
                outage.ok()
                if look.suspects:
                    pause = min(every, SUSPECT_S)
                elif look.pending <= len(held()) + len(self._waiting) and not look.dead_left:
                    pause = every * 2
            except connection.REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("worker-sweep", log)
            await asyncio.sleep(outage.pause(pause))

    async def _sweep(self, slots: Slots) -> Look:
        now = time.monotonic()
        lapsed, advertise = now >= self._next_lapsed, now >= self._next_advert
        scan = now >= self._next_scan
        subscription = self.liveness.subscription
        look = await self.sweeper.look(
            slots.free_now(),
            judge=subscription is not None and subscription.settled(),
            lapsed=lapsed,
            advertise=advertise,
            scan=scan,
        )
        if lapsed:
            self._next_lapsed = now + self.lease_seconds / 2
        if advertise:
            self._next_advert = now + self.lease_seconds / 3
        if scan:
            self._next_scan = now + SCAN_EVERY_S
        if subscription is not None and subscription.settled() and not look.subscribed:
            log.warning("Redis no longer counts this worker's liveness subscription; renewing it")
            subscription.renew()
        if look.dead:
            self.liveness.dead.note(look.dead)
            log.warning(
                "worker(s) %s found dead (connection closed): taking over %d job(s)",
                ", ".join(sorted(look.dead)),
                len(look.jobs),
            )
        self._start(slots, look.jobs)
        return look

    async def hold_loop(
        self,
        held: Callable[[], list[Job]],
        generations: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Refresh the jobs ``held()`` names, and those waiting here, every third of a
        lease; before them, the generations' own holds (``generations()``)."""
        refresh_every = self.lease_seconds / 3
        outage = contain.Outage("refreshing the hold on running jobs", log)
        while True:
            await asyncio.sleep(outage.pause(refresh_every))
            jobs = [*held(), *self._waiting]
            if not jobs:
                continue
            try:
                if generations is not None:
                    await generations()
                await self.jobs.refresh(self.consumer, jobs)
                outage.ok()
            except connection.REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("worker-hold", log)

    async def hand_back_waiting(self) -> None:
        """On shutdown: the jobs taken but never started go back for another worker."""
        while self._waiting:
            job = self._waiting.popleft()
            with contextlib.suppress(*connection.REDIS_ERRORS):
                await self.jobs.hand_back(job)
