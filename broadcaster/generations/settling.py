"""A front-end's settling of ended generations' usage (``ledger.Ledger.settle``): at once
when the wake channels say a generation ended (``end <id>``), and by a sweep of the
unsettled sets for those no wake named (the wake connection was down, every front-end
was restarting, a queue was full). Every front-end hears every end and tries; the
ledger counts each generation once.

A sweep after a miss (the wake channels lost or just joined, an end left to the sweep)
reads every group's set. The periodic one, a safety net for what no miss announced,
reads ``SWEEP_GROUPS`` groups a round, the same ones on every front-end at the same
time: all of them within ``SLOT_GROUPS / SWEEP_GROUPS`` rounds, and an idle deployment
sends a few commands every two minutes, not one per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from broadcaster.core import contain, keys
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.lock import Lock
from broadcaster.generations.ledger import Ledger, Settled

log = logging.getLogger("broadcaster.usage")

QUEUE_MAX = 10_000
"""Ends waiting to be settled in this process; beyond, an end is left to the sweep."""

SWEEP_EVERY = 120.0
"""The longest between two periodic sweeps (one front-end per round)."""

GRACE_MS = 10_000
"""A sweep takes generations that ended at least this long ago: a wake settles the
others within milliseconds."""

SWEEP_COUNT = 500
"""Generations a sweep takes from one set per round."""

SWEEP_GROUPS = 4
"""Groups' sets a periodic sweep reads (of ``keys.SLOT_GROUPS``): every group within
``SLOT_GROUPS / SWEEP_GROUPS`` rounds (about two hours). It is a safety net for what
nothing announced: an end every front-end heard and none could settle (Redis failed
meanwhile, a queue was full) makes the next round a whole sweep, as a miss does."""


class Settler:
    """A listener of the wake channels (``fanout/wakes.py``); ``run`` settles until
    cancelled, calling ``on_settled`` with each generation this process settled."""

    def __init__(
        self,
        ledger: Ledger,
        on_settled: Callable[[Settled], None],
        *,
        sweep_every: float = SWEEP_EVERY,
        grace_ms: int = GRACE_MS,
    ) -> None:
        self.ledger = ledger
        self.on_settled = on_settled
        self.sweep_every = sweep_every
        self.grace_ms = grace_ms
        self.ended: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self.left = 0
        """Ends this process left to the sweep (its queue was full)."""

    def woken(self, kind: str, arg: str) -> None:
        """``end <generation>``: settle it."""
        if kind != "end":
            return
        try:
            self.ended.put_nowait(arg)
        except asyncio.QueueFull:
            self.left += 1

    def missed(self) -> None:
        """Ends may have gone unheard: sweep now (an empty name in the queue says so)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.ended.put_nowait("")

    async def run(self) -> None:
        lock = Lock(self.ledger.redis, keys.SETTLE_SWEEP_LOCK, int(self.sweep_every * 1000))
        outage = contain.Outage("settling the usage of ended generations", log)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_every
        left = self.left
        while True:
            try:
                wait = max(0.0, next_sweep - loop.time())
                stream_id = await self._next(wait)
                if stream_id:
                    try:
                        await self._settle(stream_id)
                    except REDIS_ERRORS:
                        self.left += 1  # not settled here: the next sweep reads every set
                        raise
                    continue
                whole = stream_id == "" or self.left != left
                left = self.left
                if await lock.take():
                    next_sweep = loop.time() + self.sweep_every
                    await self.sweep(None if whole else self._turn())
                else:
                    next_sweep = loop.time() + self.sweep_every
                outage.ok()
            except REDIS_ERRORS as exc:
                await asyncio.sleep(outage.failed(exc))
            except Exception:
                contain.loop_failed("settle-usage", log)

    async def _next(self, wait: float) -> str | None:
        """The next end heard; ``""`` when ends were missed (a whole sweep is due), None
        when ``wait`` passed (a periodic one is)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                return await self.ended.get()
        return None

    def _turn(self) -> list[str]:
        """The groups' sets this periodic round reads: by the clock, so that every
        front-end taking the round reads the next ones."""
        every = keys.unsettled_keys()
        rounds = max(1, len(every) // SWEEP_GROUPS)
        at = int(time.time() // self.sweep_every) % rounds
        return every[at * SWEEP_GROUPS : (at + 1) * SWEEP_GROUPS]

    async def _settle(self, stream_id: str) -> None:
        settled = await self.ledger.settle(stream_id)
        if settled is not None:
            self.on_settled(settled)

    async def sweep(self, which: list[str] | None = None) -> int:
        """Settle what ended more than the grace ago and is still unsettled, in the sets
        ``which`` (every group's by default); how many."""
        before = int(time.time() * 1000) - self.grace_ms
        which = keys.unsettled_keys() if which is None else which
        async with self.ledger.redis.pipeline(transaction=False) as pipe:
            for key in which:
                pipe.zrangebyscore(key, "-inf", before, start=0, num=SWEEP_COUNT)
            found = await pipe.execute()
        done = 0
        for members in found:
            for raw in members:
                stream_id = raw.decode(errors="replace")
                try:
                    await self._settle(stream_id)
                    done += 1
                except REDIS_ERRORS:
                    raise
                except Exception:  # this generation's alone: the others are settled
                    contain.loop_failed("settle-usage", log, f"generation {stream_id}")
        return done
