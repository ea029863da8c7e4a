"""Appending one attempt's events: merged, conditional, and safe across Redis faults.

Every append is conditional on the seq this writer last wrote and on owning the stream.
Redis faults under a running attempt (an outage, a lost reply, lost writes) are handled
here, by ``StreamWriter``; see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from broadcaster.core.eventlog import AppendRefused, StaleWriter, StreamEnded, StreamNotFound
from broadcaster.generations.lifecycle import Generations
from worker.mapping import merge_deltas
from worker.metrics import WorkerMetrics

# The writer's lines tell a generation's story: they keep the logger name that operators
# filter a generation's lines by.
log = logging.getLogger("worker.generation")


@dataclass(frozen=True, slots=True)
class _Batch:
    """One atomic append, kept so it can be written again if Redis loses it."""

    events: list[dict[str, Any]]
    meta: dict[str, str] | None
    text_append: str
    text_reset: str | None
    extras: dict[str, Any] | None = None


class WritesLost(AppendRefused):
    """Redis lost events this writer cannot write again (they predate its attempt)."""


class Fenced(StaleWriter):
    """Found while repairing a loss: another writer has the stream now."""


class StepBoundary(Exception):
    """The worker is stopping (SIGTERM) and this generation just appended the end of a
    step (its model call and its tools): it is handed back here, where a successor
    continues with the next step, repeating nothing."""

    def __init__(self, stream_id: str, seq: int) -> None:
        super().__init__(f"generation {stream_id}: handed back at a step's end (seq {seq})")
        self.stream_id = stream_id
        self.seq = seq


_TERMINAL = frozenset({"finish", "error", "abort"})

RETRY_MAX_S = 2.0
"""The longest wait between two tries of a write Redis did not answer."""


class Backoff:
    """The waits between tries of a write Redis does not answer: 50 ms, doubling to
    ``cap``, for ``patience_s`` in all."""

    def __init__(self, patience_s: float, cap: float = RETRY_MAX_S) -> None:
        self.delay = 0.05
        self.cap = cap
        self.give_up_at = time.monotonic() + patience_s

    def next(self) -> float | None:
        """The wait before the next try; None once it would end past the patience."""
        delay = self.delay
        if time.monotonic() + delay > self.give_up_at:
            return None
        self.delay = min(delay * 2, self.cap)
        return delay


REDIS_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,
    OSError,
)
"""Errors after which an append may or may not have happened: retried, conditionally.
(redis-py's ConnectionError and TimeoutError, BusyLoadingError among them; on a Cluster,
CLUSTERDOWN and TRYAGAIN, and redis-py's own error when no node serves the slot yet, all
of them a failover in progress. Any other ResponseError is an answer, not an outage, and
is not retried.)"""


class StreamWriter:
    """Appends a generation's events, merging deltas that arrive within ``merge_s``.

    Every append is conditional on the seq this writer last wrote and on owning the stream,
    so Redis faults are safe: an append is retried for up to ``patience_s``, and a retry
    whose first try landed is refused as stale and recognised as its own; a Redis that came
    back without the newest writes has this attempt's lost batches written again byte for
    byte (``history``, bounded as the stream is), and a loss reaching before the attempt
    raises ``WritesLost``. docs/reliability.md."""

    def __init__(
        self,
        generations: Generations,
        stream_id: str,
        owner: str,
        seq: int,
        metrics: WorkerMetrics | None = None,
        *,
        request: dict[str, Any] | None = None,
        patience_s: float = 60.0,
        retry_max_s: float = RETRY_MAX_S,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.metrics = metrics
        self.stopping = stopping
        """Set when the worker stops: the next step's end raises ``StepBoundary``."""
        self.generations = generations
        self.log = generations.log
        self.stream_id = stream_id
        self.owner = owner
        self.seq = seq
        self.start_seq = seq
        self.request = request
        self.patience_s = patience_s
        self.retry_max_s = retry_max_s
        self.history: list[_Batch] = []
        self.pending: list[dict[str, Any]] = []
        self.first_pending_at: float | None = None
        self.noted_meta: dict[str, str] = {}
        """Metadata for the next append that writes events (a provider's resume point)."""
        self.wrote = False

    def add(self, events: list[dict[str, Any]]) -> None:
        if events and self.first_pending_at is None:
            self.first_pending_at = time.monotonic()
        self.pending.extend(events)

    def note_meta(self, meta: dict[str, str]) -> None:
        """Write ``meta`` with the next append of events (a later note replaces it)."""
        self.noted_meta = dict(meta)

    def deadline(self, merge_s: float) -> float | None:
        return None if self.first_pending_at is None else self.first_pending_at + merge_s

    async def flush(
        self,
        events: list[dict[str, Any]] | None = None,
        *,
        meta: dict[str, str] | None = None,
        text_reset: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> None:
        """Append what is pending and ``events`` in one atomic step, with ``meta`` and
        ``extras`` (``EventLog.append``)."""
        batch = merge_deltas(self.pending + (events or []))
        self.pending = []
        self.first_pending_at = None
        if not batch:
            return
        text = "".join(e["delta"] for e in batch if e["type"] == "text-delta")
        if self.noted_meta:
            meta = {**self.noted_meta, **(meta or {})}
            self.noted_meta = {}
        await self._write(_Batch(batch, meta, text, text_reset, extras))
        self.wrote = True
        if self.metrics is not None:
            self.metrics.appended.inc(len(batch))
        if self.stopping is not None and self.stopping.is_set() and _ends_a_step(batch):
            raise StepBoundary(self.stream_id, self.seq)

    def discard(self) -> None:
        self.pending = []
        self.first_pending_at = None
        self.noted_meta = {}

    async def _append(self, b: _Batch) -> int:
        return await self.log.append(
            self.stream_id,
            b.events,
            kind="generation",
            expect_seq=self.seq,
            owner=self.owner,
            meta=b.meta,
            text_append=b.text_append,
            text_reset=b.text_reset,
            extras=b.extras,
        )

    async def _write(self, b: _Batch) -> None:
        backoff = Backoff(self.patience_s, self.retry_max_s)
        repair: Callable[[], Awaitable[None]] | None = None
        while True:
            try:
                if repair is not None:
                    await repair()
                    repair = None
                self.seq = await self._append(b)
                break
            except REDIS_DOWN as exc:
                delay = backoff.next()
                if delay is None:
                    raise
                repair = None  # the next refusal says where the stream is now
                log.warning(
                    "generation %s: append failed (%s); retrying in %.2fs",
                    self.stream_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except Fenced:
                raise
            except StaleWriter as exc:
                if exc.last_seq == self.seq + len(b.events) and await self.log.holds(
                    self.stream_id, self.seq, b.events
                ):
                    log.info("generation %s: the append had happened (reply lost)", self.stream_id)
                    self.seq = exc.last_seq
                    break
                if exc.last_seq >= self._high_water():
                    raise  # another writer moved on: fenced
                repair = functools.partial(self._rewrite, exc.last_seq)
            except StreamNotFound:
                if repair == self._recreate:
                    raise  # it cannot be recreated: trying again would loop for ever
                repair = self._recreate
        self.history.append(b)

    def _high_water(self) -> int:
        """The seq this attempt had reached: what the stream held before any loss (above
        ``self.seq`` only while a repair is under way)."""
        return self.start_seq + sum(len(b.events) for b in self.history)

    async def _rewrite(self, stream_seq: int) -> None:
        """The stream went back to ``stream_seq``: write this attempt's lost batches again."""
        seq, kept = self.start_seq, 0
        while seq < stream_seq and kept < len(self.history):
            seq += len(self.history[kept].events)
            kept += 1
        if seq != stream_seq:
            raise WritesLost(
                self.stream_id,
                stream_seq,
                f"stream {self.stream_id} went back to seq {stream_seq}, before this "
                f"attempt's events (from seq {self.start_seq}): they cannot be written again",
            )
        # Below this attempt's newest event: only a loss can do that (nobody removes
        # events), unless another worker took over after the loss and wrote its own. The
        # stream must still be this attempt's events, exactly, up to where it now ends.
        written = [e for b in self.history[:kept] for e in b.events]
        if written and not await self.log.holds(self.stream_id, self.start_seq, written):
            raise Fenced(self.stream_id, self._high_water(), "another writer took the stream")
        log.warning(
            "generation %s: Redis lost events %d..%d; writing them again",
            self.stream_id,
            stream_seq + 1,
            self._high_water(),
        )
        # The hash went back too and may name an earlier owner: take the stream again.
        claim = await self.generations.claim(self.stream_id, self.owner, repair=True)
        if claim is None:
            raise StreamEnded(self.stream_id, stream_seq, f"stream {self.stream_id} has ended")
        if claim.last_seq != stream_seq:
            # Someone wrote meanwhile: treat it as another writer (fenced), never loop.
            raise Fenced(self.stream_id, self._high_water(), "the stream changed while repairing")
        self.seq = stream_seq
        for b in self.history[kept:]:
            self.seq = await self._append(b)

    async def _recreate(self) -> None:
        """The stream's keys are gone (Redis lost everything): if this attempt wrote the
        whole stream, create it again and write it all; else it cannot be repaired."""
        if self.start_seq != 0 or self.request is None:
            raise StreamNotFound(self.stream_id, 0, f"stream {self.stream_id} vanished")
        log.warning(
            "generation %s: its stream vanished from Redis; writing it again", self.stream_id
        )
        await self.generations.recreate(self.stream_id, self.request)
        await self._rewrite(0)


def _ends_a_step(batch: list[dict[str, Any]]) -> bool:
    """The batch ends a step and the generation goes on (a ``finish-step`` with no
    terminal event): a step boundary."""
    types = {e.get("type") for e in batch}
    return "finish-step" in types and not types & _TERMINAL


__all__ = ["Fenced", "StepBoundary", "StreamWriter", "WritesLost"]
