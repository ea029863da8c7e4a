"""Generations that waited too long for a worker end with ``error``, so that nobody waits
for them forever.

A request is queued even while no worker is alive; if none takes it within
``BROADCASTER_QUEUED_TIMEOUT_SECONDS`` (or its worker died and nobody took it over), its
stream ends with an ``error`` saying so. The front-ends look (a worker cannot: there may
be none), one per round (``keys.QUEUE_SWEEP_LOCK``), every quarter of the timeout and
at most ``MAX_EVERY`` apart. The end is appended conditionally (nobody claimed it, or
the dead worker still owns it), so it never races a worker.
"""

from __future__ import annotations

import asyncio
import logging

from broadcaster.core import contain, keys
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import UNCLAIMED, AppendRefused, EventLog, StaleWriter
from broadcaster.core.lock import Lock
from broadcaster.generations.jobs import JobQueue

log = logging.getLogger("broadcaster.overdue")

MAX_EVERY = 60.0
"""The longest between two rounds of overdue jobs (the default timeout, 600 s, gives
this): the front-end that looks sends a few commands per provider queue each round."""

STALLED_START_S = 20.0
"""A start takes milliseconds (seconds in a failover, which its commands ride out): one
under way for this long was cut off."""

STARTS_EVERY = 10.0
"""The longest between two looks for stalled starts."""

STALLED_TEXT = "this generation's start was interrupted (a server failed); send it again"


class OverdueJobs:
    """``run`` looks for overdue jobs every ``every`` seconds until cancelled."""

    def __init__(self, jobs: JobQueue, event_log: EventLog, timeout_s: float) -> None:
        self.jobs = jobs
        self.log = event_log
        self.timeout_s = timeout_s
        self.every = min(MAX_EVERY, max(0.5, timeout_s / 4))
        self.stalled_s = min(STALLED_START_S, timeout_s)
        self.tick = min(self.every, STARTS_EVERY, max(0.5, self.stalled_s / 2))
        self.ended = 0
        self.stalled = 0
        """Generations ended because their start was cut off."""

    async def run(self) -> None:
        # Never released: held for a round, it lets one front-end look per round.
        lock = Lock(self.jobs.redis, keys.QUEUE_SWEEP_LOCK, int(self.every * 1000))
        outage = contain.Outage("looking for overdue generations", log)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.every
        while True:
            await asyncio.sleep(outage.pause(self.tick))
            try:
                # No lock for the stalled starts: one read when there are none, and two
                # front-ends ending the same one is harmless (the second is refused).
                await self.end_stalled_starts()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.every
                    if await lock.take():
                        await self.sweep()
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("overdue-jobs", log)

    async def sweep(self) -> int:
        """End every overdue generation; how many were ended."""
        ended = 0
        for job, owner in await self.jobs.overdue(int(self.timeout_s * 1000)):
            if owner is None:
                text = f"no worker took this generation within {self.timeout_s:g} s"
            else:
                text = f"its worker stopped and none took it over within {self.timeout_s:g} s"
            try:
                await self.log.append(
                    job.generation_id,
                    [{"type": "error", "errorText": text}],
                    kind="generation",
                    owner=owner or UNCLAIMED,
                    meta={"error": text},
                )
                ended += 1
                log.warning("generation %s: %s; ended", job.generation_id, text)
            except StaleWriter:
                continue  # a worker claimed it meanwhile: its job entry is its own now
            except AppendRefused:
                pass  # it ended meanwhile, or expired: nothing left to run
            await self.jobs.done(job)
        self.ended += ended
        return ended

    async def end_stalled_starts(self) -> int:
        """End every generation whose start was cut off; how many were ended."""
        ended = 0
        for generation_id in await self.jobs.stalled_starts(int(self.stalled_s * 1000)):
            try:
                await self.log.append(
                    generation_id,
                    [{"type": "error", "errorText": STALLED_TEXT}],
                    kind="generation",
                    owner=UNCLAIMED,
                    meta={"error": STALLED_TEXT},
                )
                ended += 1
                log.warning("generation %s: its start was cut off; ended", generation_id)
            except AppendRefused:
                pass  # claimed (its job was queued after all), ended, or never created
            await self.jobs.not_starting(generation_id)
        self.stalled += ended
        return ended
