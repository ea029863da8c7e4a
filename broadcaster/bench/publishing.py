"""How the bench publishes: where to (``EventSink``: ``Publisher``, or a comparison's own
relay), one event to many streams in pipelines (``publish_all``), and the schedules of
the measured window: ticks of every stream at once (``ticks``) or each stream on its own
(``staggered``), run on time by ``on_schedule``."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

PUBLISHES_IN_FLIGHT = 16  # overlapping publish round trips (see ticks)
STAGGERED_IN_FLIGHT = 64  # overlapping appends with --pipeline 1 (see staggered)
PIPELINE = 1000  # appends per pipeline when publishing to many streams at once (--pipeline)


class EventSink(Protocol):
    """Where the bench publishes: ``Publisher`` (Redis), or a comparison's own relay."""

    async def publish(
        self, stream_id: str, events: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> int: ...

    async def aclose(self) -> None: ...


async def publish_all(
    sink: EventSink, sids: list[str], event: dict[str, Any], pipeline: int = PIPELINE
) -> list[int]:
    """``event`` to every stream: in pipelines of up to ``pipeline`` appends when the sink
    has ``publish_many`` (``Publisher`` has), so one process can offer thousands of
    publishes a second. Returns each publish's own time, ns from its send to Redis's
    reply (a pipeline's for each of its appends)."""
    many = getattr(sink, "publish_many", None)
    if many is None:
        return list(await asyncio.gather(*(_timed(sink.publish(sid, event)) for sid in sids)))
    took: list[int] = []
    for i in range(0, len(sids), pipeline):
        chunk = sids[i : i + pipeline]
        took += [await _timed(many(dict.fromkeys(chunk, event)))] * len(chunk)
    return took


async def _timed(publish: Awaitable[Any]) -> int:
    t = time.time_ns()
    await publish
    return time.time_ns() - t


Job = Callable[[], Awaitable[list[int]]]
"""Publishes, and returns each publish's own time (ns)."""


async def on_schedule(jobs: Iterable[tuple[float, Job]], in_flight: int) -> list[int]:
    """Start each job at its ``time.perf_counter()`` time, without waiting for the ones
    before it (up to ``in_flight`` at once), so the rate holds on a loaded machine; Redis
    still numbers each stream's events in order. Returns every publish's own time,
    sorted: it bounds the part of the publish-to-viewer latency spent before Redis held
    the event, not the server's."""
    took: list[int] = []
    slots = asyncio.Semaphore(max(1, in_flight))
    running: set[asyncio.Task[None]] = set()

    async def run(job: Job) -> None:
        try:
            took.extend(await job())
        finally:
            slots.release()

    try:
        for at, job in jobs:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(run(job))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return sorted(took)


def ticks(
    sink: EventSink, sids: list[str], n: int, rate: float, t0: float, *, pad: str, pipeline: int
) -> tuple[Iterator[tuple[float, Job]], int]:
    """Tick k publishes one event to every stream at t0 + k/rate, pipelined; ticks overlap
    up to ``PUBLISHES_IN_FLIGHT`` round trips in all. The jobs, and how many at once."""
    trips = math.ceil(len(sids) / pipeline) if hasattr(sink, "publish_many") else len(sids)

    def tick() -> Awaitable[list[int]]:
        event = {"type": "data-bench", "t": time.time_ns(), "p": pad}
        return publish_all(sink, sids, event, pipeline)

    return ((t0 + k / rate, tick) for k in range(n)), PUBLISHES_IN_FLIGHT // trips


def staggered(
    sink: EventSink,
    sids: list[str],
    n: int,
    rate: float,
    t0: float,
    *,
    pad: str,
    kind: str = "",
    slot: float = 0.0,
) -> tuple[Iterator[tuple[float, Job]], int]:
    """Each stream on its own schedule, as independent generations append: stream j's k-th
    event at t0 + (k + j/len(sids))/rate, each on its own round trip (up to
    ``STAGGERED_IN_FLIGHT`` at once); with ``slot`` the appends due in one slot share one,
    which saves the bench's CPU, not Redis's. Returns the jobs and how many at once."""

    def event() -> dict[str, Any]:
        if kind:
            return {"type": kind, "t": time.time_ns()}
        return {"type": "data-bench", "t": time.time_ns(), "p": pad}

    def one(due: list[str]) -> Job:
        many = getattr(sink, "publish_many", None)

        async def job() -> list[int]:
            if len(due) == 1 or many is None:
                return [await _timed(sink.publish(sid, event())) for sid in due]
            return [await _timed(many({sid: event() for sid in due}))] * len(due)

        return job

    streams = len(sids)
    # Offsets from t0, slotted as offsets: an offset taken back out of a clock of a day's
    # seconds carries its rounding (1e-12 s), enough to put a due time in the slot before.
    offsets = (
        ((k + j / streams) / rate, sids[j])
        for k, j in (divmod(i, streams) for i in range(n * streams))
    )
    if slot <= 0:
        return ((t0 + at, one([sid])) for at, sid in offsets), STAGGERED_IN_FLIGHT
    slots = itertools.groupby(offsets, key=lambda x: int(x[0] / slot + 1e-9))
    jobs = ((t0 + k * slot, one([sid for _, sid in due])) for k, due in slots)
    return jobs, STAGGERED_IN_FLIGHT
