"""Taking generation jobs from the queues of the providers this worker serves, and
holding them while they run.

Three loops, all owned by ``Worker.run``:

* *take*: new jobs with one ``XREADGROUP`` over every queue served (blocking, on its own
  connection) and, every half lease, jobs abandoned by dead workers with ``XAUTOCLAIM``,
  never more than the free slots of the generations running here. A read over several
  queues can bring a few jobs more than there are slots (``COUNT`` is per queue): those
  wait here, held like running ones, and start as slots free up;
* *hold*: every third of a lease a refresh of this worker's hold on the generations it
  runs (in their metadata: a claim refuses a held one) and then on the jobs it runs or
  keeps waiting, so nobody takes them over (on shutdown too, while they finish). The
  generations first: a job idle for a lease then always means a lapsed hold;
* *advertise*: every third of a lease, the providers served, for the front-ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis

from broadcaster.core import connection, contain, keys
from broadcaster.generations.jobs import Job, JobQueue
from worker.metrics import WorkerMetrics

log = logging.getLogger("worker")

BLOCK_MS = 2000
"""How long one ``XREADGROUP`` waits for new jobs (the reader's socket timeout allows it)."""


class Slots(Protocol):
    """Where taken jobs go: the generations running here."""

    async def free_slots(self) -> int:
        """Wait until at least one generation more may run; how many may."""
        ...

    def start(self, job: Job) -> None: ...


class JobTaker:
    """Takes jobs for one consumer of the queues' group, and refreshes its hold on them."""

    def __init__(
        self,
        jobs: JobQueue,
        consumer: str,
        lease_seconds: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.jobs = jobs
        self.metrics = metrics
        self.consumer = consumer
        self.lease_seconds = lease_seconds
        self._group_ready = False
        self._next_sweep = 0.0
        self._waiting: deque[Job] = deque()
        """Taken beyond the free slots; bounded by the number of queues read."""

    async def advertise(self) -> None:
        """Tell the front-ends, for a few leases, which providers this worker serves."""
        ttl_ms = int(self.lease_seconds * keys.PROVIDER_TTL_LEASES * 1000)
        await self.jobs.advertise(ttl_ms)

    async def advertise_loop(self) -> None:
        outage = contain.Outage("advertising the providers served", log)
        while True:
            await asyncio.sleep(outage.pause(self.lease_seconds / 3))
            try:
                await self.advertise()
                outage.ok()
            except connection.REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("worker-advertise", log)

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
            for job in taken[:free]:
                slots.start(job)
            self._waiting.extend(taken[free:])

    async def _take(self, reader: Redis, free: int) -> list[Job]:
        if not self._group_ready:
            await self.jobs.ensure_group()
            self._group_ready = True
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.lease_seconds / 2
            lease_ms = int(self.lease_seconds * 1000)
            taken = await self.jobs.take_abandoned(self.consumer, lease_ms, free)
            if taken:
                # Abandoned jobs start at once: a blocking read first would hold them
                # back for up to BLOCK_MS. New jobs are read on the next round.
                return taken
        taken = await self.jobs.take(reader, self.consumer, free, BLOCK_MS)
        if self.metrics is not None:
            self.metrics.taken(taken)  # new jobs only: a takeover's wait was not in a queue
        return taken

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
