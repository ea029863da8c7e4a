"""The one way a generation starts: admitted (its provider served, room in flight), created
queued, and put in its provider's job queue; the generations route, a chat's submit and
the chat pump all start here, so none skips admission. A chat's generation is queued
only once the chat names it (``swap``).

The generation, the chat and the queue live in three Cluster slots, so a start is noted
first (``JobQueue.starting``) and the note removed with the job's queueing: a start cut
off between its steps is ended by ``overdue.py``. The job keeps the request's
``traceparent``, so whoever runs it continues the trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from broadcaster.core import keys, tracing
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations, named


@dataclass(frozen=True, slots=True)
class Admission:
    """What admits a new generation: the providers the deployment serves
    (``BROADCASTER_PROVIDERS``; None: the default provider and every provider a worker
    has ever advertised), and how many generations may be queued or running."""

    served: frozenset[str] | None
    default_provider: str
    max_in_flight: int


@dataclass(frozen=True, slots=True)
class Admitted:
    """Proof that a generation for ``provider`` passed ``admit``: only ``admit`` makes one."""

    provider: str


class NotStarted(Exception):
    """A generation that was not started; nothing of it was stored."""


class ProviderUnavailable(NotStarted):
    """The deployment does not serve the request's provider; ``live``: the providers a
    live worker serves now (built-in ones and agents), which the answer names."""

    def __init__(self, provider: str, live: tuple[str, ...] = ()) -> None:
        served = ", ".join(live) if live else "none"
        super().__init__(
            f"this deployment does not serve provider {provider!r} "
            f"(served by a live worker now: {served})"
        )
        self.provider = provider
        self.live = live


class Busy(NotStarted):
    """Too many generations are in flight (queued or running): retry later."""

    def __init__(self) -> None:
        super().__init__("too many generations in flight; retry later")


class IdTaken(NotStarted):
    """A stream with the generation's id already exists."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"a stream with id {stream_id!r} already exists")
        self.stream_id = stream_id


async def admit(jobs: JobQueue, admission: Admission, provider: str) -> Admitted:
    """What a new generation must pass before anything is stored: ``ProviderUnavailable``
    for a provider the deployment does not serve, ``Busy`` when too many are in flight. A
    served provider with no worker alive is queued: a cold start is a server state, not
    the client's mistake."""
    depth, seen = await jobs.admission(provider)
    if admission.served is not None:
        served = provider in admission.served
    else:
        served = seen or provider == admission.default_provider
    if not served:
        status = await jobs.provider_status()
        raise ProviderUnavailable(
            provider, tuple(n for n, s in status.items() if s["live_workers"])
        )
    if depth >= admission.max_in_flight:
        raise Busy()
    return Admitted(provider)


async def create(generations: Generations, stream_id: str, job: dict[str, Any]) -> None:
    """Create generation ``stream_id``, queued but not yet in a worker's queue (a chat's
    message that waits for its turn, until ``start`` queues it); ``IdTaken`` when the id
    is taken."""
    current_stream.set(stream_id)
    if not await generations.create(stream_id, job):
        raise IdTaken(stream_id)


async def start(
    generations: Generations,
    jobs: JobQueue,
    admission: Admission,
    stream_id: str,
    job: dict[str, Any],
    *,
    admitted: Admitted | None = None,
    created: bool = False,
    swap: Callable[[], Awaitable[bool]] | None = None,
) -> bool:
    """Start generation ``stream_id`` running ``job``: admit it (or take ``admitted``, a
    check the caller made first), create it (``IdTaken``; ``created``: it exists already),
    ``swap`` (a chat's record made to name it), then queue it. False when ``swap`` finds
    another start came first: nothing queued, and what this call created is deleted.
    Created before the chat names it, queued after: a reader of the chat finds a generation
    that exists, and no worker runs one the chat does not name."""
    if admitted is None or admitted.provider != job["provider"]:
        admitted = await admit(jobs, admission, job["provider"])
    if "traceparent" not in job:
        job = {**job, "traceparent": tracing.current()}
    await jobs.starting(stream_id)
    if created:
        fields: list[str | bytes] = ["request", await generations.encode(job), *named(job)]
        await generations.log.redis.hset(keys.meta_key(stream_id), items=fields)
    else:
        try:
            await create(generations, stream_id, job)
        except IdTaken:
            await jobs.not_starting(stream_id)  # the stream of that id is not this start's
            raise
    if swap is not None and not await swap():
        if not created:
            await generations.discard(stream_id)
        await jobs.not_starting(stream_id)
        return False
    await jobs.enqueue(stream_id, admitted.provider)
    # Acknowledged (BROADCASTER_DURABILITY) once the generation and its job are on the
    # replicas: on a Cluster they may live on two nodes.
    durability = generations.log.durability
    await durability.confirm(keys.meta_key(stream_id), "EXISTS", keys.meta_key(stream_id))
    await durability.confirm(keys.jobs_key(admitted.provider))
    return True
