"""This front-end's part of the viewer counts: its own count of each stream's viewers,
written to Redis when it changes (``presence/counts.py``), its heartbeat, and the removal
of the counts of front-ends that died.

Joins and leaves only mark a stream; one task writes the marked streams' counts a moment
later (``flush``), so a burst of viewers joining one stream costs one write, not one per
viewer, and nothing about presence is done per event. The write publishes the stream's
new total on its channel; every front-end watching the stream passes it on to the viewers
that asked for it (``Hub``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable
from contextvars import Context

from broadcaster.core import contain
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.keys import outbox_key
from broadcaster.presence.counts import BATCH, PresenceStore

log = logging.getLogger("broadcaster.presence")


class Presence:
    """Counts this front-end's viewers per stream; ``async with`` runs the writer and the
    heartbeat."""

    def __init__(
        self,
        store: PresenceStore,
        *,
        flush: float = 0.05,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_change(old, new)`` hears each change of a stream's total this front-end
        made (the crossings of zero are the stream's occupied and vacated moments)."""
        self.store = store
        self.on_change = on_change
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.flush_delay = flush
        self._counts: Counter[str] = Counter()
        self._subjects: dict[str, Counter[str]] = {}
        self._dirty: set[str] = set()
        self._tracked: set[str] = set()
        self._dead: list[str] = []
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = 0
        self.reaped = 0

    async def __aenter__(self) -> Presence:
        with contextlib.suppress(*REDIS_ERRORS):
            _, self._dead = await self.store.beat(self.instance)
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="presence-flush", context=Context()),
            asyncio.create_task(self._beat_loop(), name="presence-beat", context=Context()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await contain.cancel_until_ended(self._tasks, raising=False)
        self._tasks = []
        # What is left (responses ended by the drain have left already): go to zero.
        for stream_id in list(self._counts):
            self._counts[stream_id] = 0
            self._dirty.add(stream_id)
        with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
            async with asyncio.timeout(2):
                await self._flush()
                await self.store.leave(self.instance)

    def join(self, stream_id: str, subject: str | None) -> None:
        self._counts[stream_id] += 1
        if subject:
            # A Counter made for a stream's first subject only, and the count read with
            # ``get`` (a Counter's missing key is a Python call, ``__missing__``).
            subjects = self._subjects.get(stream_id)
            if subjects is None:
                subjects = self._subjects[stream_id] = Counter()
            subjects[subject] = subjects.get(subject, 0) + 1
        self._mark(stream_id)

    def leave(self, stream_id: str, subject: str | None) -> None:
        self._counts[stream_id] -= 1
        if subject and stream_id in self._subjects:
            subjects = self._subjects[stream_id]
            subjects[subject] -= 1
            if subjects[subject] <= 0:
                del subjects[subject]
        self._mark(stream_id)

    def _mark(self, stream_id: str) -> None:
        self._dirty.add(stream_id)
        self._wanted.set()

    async def _flush_loop(self) -> None:
        outage = contain.Outage("writing viewer counts", log)
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await asyncio.sleep(self.flush_delay)  # joins of a burst, written together
            try:
                await self._flush()
                outage.ok()
            except REDIS_ERRORS as exc:
                await asyncio.sleep(outage.failed(exc))
                self._wanted.set()
            except Exception:
                # Kept dirty by _flush: written again on the next round.
                contain.loop_failed("presence-flush", log)
                await asyncio.sleep(contain.BACKOFF)
                self._wanted.set()

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        streams = sorted(dirty, key=outbox_key)  # a round's streams share few groups
        try:
            for i in range(0, len(streams), BATCH):
                await self._write(streams[i : i + BATCH])
        except BaseException:
            self._dirty |= dirty  # written again on the next round (a write is absolute)
            raise

    async def _write(self, streams: list[str]) -> None:
        """The counts of ``streams``, one script call per slot group (``set_many``); the
        streams this front-end starts or stops counting are recorded (for a reaper,
        should it die) in one command before and one after."""
        new = [s for s in streams if self._counts.get(s, 0) > 0 and s not in self._tracked]
        await self.store.track(self.instance, new, True)
        self._tracked.update(new)
        written = [(s, self._counts.get(s, 0), sorted(self._subjects.get(s, ()))) for s in streams]
        changes = await self.store.set_many(self.instance, written, self._dead)
        self.writes += len(written)
        untracked = []
        for (stream_id, count, _), (old, now) in zip(written, changes, strict=True):
            if old != now and self.on_change is not None:
                self.on_change(old, now)
            if count <= 0 and self._counts.get(stream_id, 0) <= 0:
                # this front-end counts it no more
                self._counts.pop(stream_id, None)
                self._subjects.pop(stream_id, None)
                if stream_id in self._tracked:
                    untracked.append(stream_id)
        self._tracked.difference_update(untracked)
        await self.store.track(self.instance, untracked, False)

    async def _beat_loop(self) -> None:
        outage = contain.Outage("presence heartbeat", log)
        while True:
            await asyncio.sleep(outage.pause(self.store.heartbeat))
            try:
                _, self._dead = await self.store.beat(self.instance)
                for instance in self._dead:
                    streams = await self.store.reap(instance, self.on_change)
                    if streams:
                        self.reaped += 1
                        log.warning(
                            "front-end %s stopped beating: its viewers of %d stream(s) removed",
                            instance,
                            streams,
                        )
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("presence-beat", log)
