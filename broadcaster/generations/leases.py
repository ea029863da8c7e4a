"""Jobs leased to workers that are not Python, over HTTP (docs/worker-protocol.md).

An HTTP worker is one more owner of the same machinery as ``python -m worker``: a claim
reads its provider's job queue in ``JOBS_GROUP`` (as ``keys.HTTP_CONSUMER``), takes
abandoned entries first (``XAUTOCLAIM`` after a lease), and makes the generation its own
with ``claim.lua`` (``Generations.claim``), whose owner is a fresh *lease token*. Every
append names that token as its owner and the seq it expects, so a worker whose lease
lapsed and was taken over is refused (``Fenced``) and never interleaves with its
successor. A renewal refreshes the generation's hold (``hold.lua``) and the job's idle
time, as the Python worker's hold loop does; a hand-back is ``release.lua`` and the job
re-added at its queue's tail. A claim advertises its provider exactly as a worker's
heartbeat does (``JobQueue.advertise``): ``/readyz`` lists it and admission accepts it.

The token is ``<provider>.<queue entry id>.<random>``: the route needs nothing stored
beside it to find the job again, and what it carries is trusted only once the
generation's ``owner`` equals the whole token (the random part is 128 bits).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from broadcaster.core import keys, names
from broadcaster.core.eventlog import StaleWriter, StreamEnded, StreamNotFound, WrongKind
from broadcaster.core.events import Usage
from broadcaster.generations import waiting
from broadcaster.generations.chat_turns import TurnsGone, resolve
from broadcaster.generations.jobs import Job, JobQueue
from broadcaster.generations.lifecycle import Claim, Generations, Held

BLOCK_SLICE_S = 1.0
"""One blocking read of a claim's long-poll: short enough that a claim whose client left
ends soon, and well under the command client's socket timeout."""
MAX_HISTORY_BYTES = 4 * 1024 * 1024
"""The most of a taken-over generation's events a claim's answer carries (the rest is
in its stream, ``events_complete`` false)."""
MAX_STEER = 64
"""The most steering messages one answer carries (the oldest first)."""
MAX_LOST = 3
"""Workers lost under one generation before it ends with ``error`` (the Python
worker's ``WORKER_MAX_ATTEMPTS`` default): a job that kills every worker that takes it
is not taken for ever."""
MAX_WAITING = 64
"""Claims one process lets wait at once (``Busy`` beyond): each holds a connection of
the command pool for a slice at a time."""
_TERMINAL = frozenset({"finish", "error", "abort"})

MAX_MODEL_CHARS = 200
"""The longest model a ``finish`` may name for the generation's record (a request's own
model is no longer)."""


class Busy(Exception):
    """``MAX_WAITING`` claims wait already in this process."""


class Fenced(Exception):
    """The token does not own the generation (never did, or its lease lapsed and another
    worker took it over, or it handed it back)."""


class NoSuchJob(Exception):
    """No generation has this id (never, expired, or not a generation)."""


class SeqMismatch(Exception):
    """The append expected another last seq: the stream is at ``last_seq``."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"the stream is at seq {last_seq}")
        self.last_seq = last_seq


class Ended(Exception):
    """The generation has ended (a stop, a cancel, or its own terminal event)."""

    def __init__(self, how: str, last_seq: int) -> None:
        super().__init__(f"the generation has ended ({how})")
        self.how = how
        self.last_seq = last_seq


@dataclass(frozen=True, slots=True)
class Wait:
    """An append's request to wait for a person: the calls asked about, and for how
    long (then each is denied)."""

    asks: list[waiting.Ask]
    seconds: float


@dataclass(frozen=True, slots=True)
class Lease:
    """What a token says: the provider's queue and the entry that holds the job."""

    token: str
    provider: str
    entry_id: str

    def job(self, generation_id: str) -> Job:
        queue = keys.jobs_key(self.provider)
        return Job(self.entry_id.encode(), generation_id, self.provider, queue)


def new_token(provider: str, entry_id: bytes) -> str:
    return f"{provider}.{entry_id.decode()}.{secrets.token_urlsafe(16)}"


def parse_token(token: str) -> Lease | None:
    """The lease a token names, or None if it is not one this module makes."""
    if not names.is_lease_token(token):
        return None
    provider, entry_id, _ = token.split(".")
    return Lease(token, provider, entry_id)


@dataclass(slots=True)
class Signals:
    """What the agent must know now: stop (the generation ended: a person stopped it, or
    it was cancelled), and the steering messages waiting for its next step."""

    stop: bool = False
    ended: str | None = None
    steer: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"stop": self.stop, "ended": self.ended, "steer": self.steer}


@dataclass(slots=True)
class Leased:
    """A claimed job, as its answer tells it."""

    generation_id: str
    token: str
    provider: str
    claim: Claim
    request: dict[str, Any]
    message_id: str
    events: list[dict[str, Any]]
    events_complete: bool
    signals: Signals


class Leases:
    """The HTTP workers' side of the job queues and the generations' lifecycle."""

    def __init__(self, generations: Generations, ttl_leases: int = keys.PROVIDER_TTL_LEASES):
        self.generations = generations
        self.log = generations.log
        self.redis = generations.log.redis
        self.lease_ms = generations.lease_ms
        self.advertise_ms = self.lease_ms * ttl_leases
        self.waiting = 0

    def _queue(self, provider: str) -> JobQueue:
        return JobQueue(self.redis, (provider,), legacy=False)

    async def claim(
        self, provider: str, wait_s: float, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> Leased | None:
        """The next job of ``provider``, waiting up to ``wait_s`` for one; None if none
        came, or once ``gone()`` says the client left. Advertises ``provider`` while it
        waits (as a worker's heartbeat does). ``Busy`` past ``MAX_WAITING``."""
        if self.waiting >= MAX_WAITING:
            raise Busy
        self.waiting += 1
        try:
            return await self._claim(provider, wait_s, gone)
        finally:
            self.waiting -= 1

    async def _claim(
        self, provider: str, wait_s: float, gone: Callable[[], Awaitable[bool]] | None
    ) -> Leased | None:
        queue = self._queue(provider)
        await queue.advertise(self.advertise_ms)
        await queue.ensure_group()
        advertised = time.monotonic()
        deadline = advertised + wait_s
        while True:
            taken = await queue.take_abandoned(keys.HTTP_CONSUMER, self.lease_ms, 1)
            if not taken:
                left = int(min(deadline - time.monotonic(), BLOCK_SLICE_S) * 1000)
                # No wait left: no BLOCK at all (Redis times blocks out only on its
                # cron, every 100 ms at the default hz, so even BLOCK 1 costs that).
                block_ms = left if left > 0 else None
                taken = await queue.take(self.redis, keys.HTTP_CONSUMER, 1, block_ms)
            for job in taken:
                leased = await self._lease(queue, job)
                if leased is not None:
                    return leased
            if time.monotonic() >= deadline or (gone is not None and await gone()):
                return None
            if time.monotonic() - advertised >= self.advertise_ms / 3000:
                await queue.advertise(self.advertise_ms)
                advertised = time.monotonic()

    async def _lease(self, queue: JobQueue, job: Job) -> Leased | None:
        """Make ``job`` a new token's, as the Python worker's claim does; None when it
        needs no running (ended, gone, waiting for a person, held by a live owner)."""
        token = new_token(job.provider, job.entry_id)
        gid = job.generation_id
        try:
            # The token is the claim's own too: a claim redis-py sends again after its
            # reply was lost finds itself, not a hold of a live owner.
            claim = await self.generations.claim(gid, token, token=token)
        except Held:
            if not job.taken_over:
                await queue.done(job)  # a duplicate job of a live generation: dropped
            return None  # a stale one stays pending: the next look settles it
        meta = await self.log.meta(gid) if claim is not None else None
        if claim is None or meta is None:
            await queue.done(job)
            return None
        if claim.lost >= MAX_LOST:
            await self._give_up(gid, token, claim)
            await queue.done(job)
            return None
        request: dict[str, Any] = json.loads(meta.get("request") or "{}")
        try:
            request = await resolve(self.log.redis, request, gid)
        except TurnsGone as exc:
            await self._fail(gid, token, claim, str(exc), str(exc))
            await queue.done(job)
            return None
        if "prompt" in request:  # the agent always gets messages, as a provider does
            prompt = request.pop("prompt")
            request.setdefault("messages", [{"role": "user", "content": prompt}])
        events, complete = await self._history(gid, claim.last_seq)
        given = request.get("ui_message_id") or meta.get("ui_message_id")
        return Leased(
            gid,
            token,
            job.provider,
            claim,
            request,
            given if isinstance(given, str) and given else gid,
            events,
            complete,
            await self.signals(gid),
        )

    async def _give_up(self, gid: str, token: str, claim: Claim) -> None:
        why = "worker lost too many times"
        await self._fail(gid, token, claim, f"gave up after {MAX_LOST} lost workers", why)

    async def _fail(self, gid: str, token: str, claim: Claim, text: str, why: str) -> None:
        """End the generation with an ``error`` saying ``text``."""
        # Refused: another writer, or an end, got there first.
        with contextlib.suppress(StaleWriter, StreamEnded):
            await self.log.append(
                gid,
                [{"type": "error", "errorText": text}],
                kind="generation",
                expect_seq=claim.last_seq,
                owner=token,
                meta={"error": why},
            )

    async def _history(self, gid: str, last_seq: int) -> tuple[list[dict[str, Any]], bool]:
        """The events an earlier attempt left (up to ``MAX_HISTORY_BYTES``)."""
        found: list[dict[str, Any]] = []
        size = 0
        async for page in self.log.read_after(gid, 0, last_seq):
            for event in page:
                size += len(event.data)
                if size > MAX_HISTORY_BYTES:
                    return found, False
                found.append(event.json())
        return found, True

    async def signals(self, gid: str) -> Signals:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.meta_key(gid), "ended")
            pipe.lrange(keys.steer_key(gid), 0, MAX_STEER - 1)
            ended, raw = await pipe.execute()
        how = _text(ended)
        return Signals(how is not None, how, _steering(raw))

    async def _owned(self, gid: str, token: str) -> tuple[Lease, str | None]:
        """The lease of ``token`` if it owns ``gid``, and how the generation ended (None
        while it runs); ``Fenced`` or ``NoSuchJob`` otherwise."""
        lease = parse_token(token)
        if lease is None:
            raise Fenced
        found = await self.redis.hmget(keys.meta_key(gid), "owner", "ended", "kind")
        owner, ended, kind = (_text(v) for v in found)
        if kind != "generation":
            raise NoSuchJob(gid)
        if owner != token:
            raise Fenced
        return lease, ended

    async def renew(self, gid: str, token: str) -> Signals:
        """Extend the lease for another ``lease_ms``; the signals. An ended generation
        ends the lease too (``stop``: its job is done)."""
        lease, ended = await self._owned(gid, token)
        job = lease.job(gid)
        if ended is not None:
            await self._queue(lease.provider).done(job)
            return await self.signals(gid)
        if not await self.generations.hold_one(gid, token):
            raise Fenced
        await self._queue(lease.provider).refresh(keys.HTTP_CONSUMER, [job])
        return await self.signals(gid)

    async def append(
        self,
        gid: str,
        token: str,
        after: int,
        events: list[dict[str, Any]],
        wait: Wait | None = None,
        *,
        usage: dict[str, Any] | None = None,
    ) -> tuple[int, bool, Signals]:
        """Append ``events`` if ``token`` owns ``gid`` and the stream is at ``after``:
        (the seq of the last, whether they were there already, the signals); a batch sent
        again after a lost answer is never written twice. ``data-steer`` events take as
        many steering messages off the list in the same step; a terminal event ends the
        job, and so does a ``wait`` (the generation then waits for a person). The usage is
        stored with the end (``reported``)."""
        lease = parse_token(token)
        if lease is None:
            raise Fenced
        own = events
        events, meta, extras = _with_wait(gid, after, own, wait)
        meta = reported(events[-1], usage) or meta
        again = False
        try:
            seq = await self.log.append(
                gid,
                events,
                kind="generation",
                expect_seq=after,
                owner=token,
                meta=meta,
                text_append=_text_of(events),
                extras=extras or None,
            )
        except StreamEnded as exc:
            _, ended = await self._owned(gid, token)
            await self._queue(lease.provider).done(lease.job(gid))
            raise Ended(ended or "ended", exc.last_seq) from None
        except (StreamNotFound, WrongKind):
            raise NoSuchJob(gid) from None
        except StaleWriter as exc:
            if wait is not None and await self._suspended(gid, after, own, wait, exc.last_seq):
                return exc.last_seq, True, await self.signals(gid)
            await self._written_before(gid, token, after, events, exc.last_seq)
            seq, again = exc.last_seq, True
        if wait is not None or events[-1].get("type") in _TERMINAL:
            await self._queue(lease.provider).done(lease.job(gid))
        return seq, again, await self.signals(gid)

    async def _written_before(
        self, gid: str, token: str, after: int, events: list[dict[str, Any]], last_seq: int
    ) -> None:
        """Check that an append refused as stale is this batch, written before (its answer
        was lost): ``Fenced`` unless ``token`` still owns ``gid``, ``SeqMismatch`` unless
        the stream holds exactly these events after ``after``."""
        await self._owned(gid, token)
        if not (last_seq == after + len(events) and await self.log.holds(gid, after, events)):
            raise SeqMismatch(last_seq) from None

    async def _suspended(
        self, gid: str, after: int, own: list[dict[str, Any]], wait: Wait, last_seq: int
    ) -> bool:
        """Whether a suspending append refused as stale is this one, whose answer was
        lost: the stream waits on the same calls, right after the same events."""
        if last_seq != after + len(own) + len(wait.asks):
            return False
        raw = await self.redis.hmget(keys.meta_key(gid), "status", "wait")
        status, held = (_text(v) for v in raw)
        if status != "waiting" or not held:
            return False
        asked = [a.get("toolCallId") for a in json.loads(held).get("approvals", [])]
        if asked != [a.call_id for a in wait.asks]:
            return False
        return await self.log.holds(gid, after, own)

    async def release(self, gid: str, token: str) -> None:
        """Hand the job back: another worker takes it over at once, from the stream."""
        lease, ended = await self._owned(gid, token)
        if ended is not None:
            await self._queue(lease.provider).done(lease.job(gid))
            raise Ended(ended, 0)
        if not await self.generations.release(gid, token):
            raise Fenced
        await self._queue(lease.provider).hand_back(lease.job(gid))


def reported(last: dict[str, Any], usage: dict[str, Any] | None) -> dict[str, str] | None:
    """The metadata a batch that ends with ``last`` stores of what the generation used:
    ``usage`` (the AI SDK's shape), else its ``finish``'s ``messageMetadata.usage``, in
    the API's shape; and the model its ``finish`` names. None when it reports nothing."""
    if last.get("type") not in _TERMINAL:
        return None
    metadata = last.get("messageMetadata") if last.get("type") == "finish" else None
    metadata = metadata if isinstance(metadata, dict) else {}
    said = usage if usage is not None else metadata.get("usage")
    meta = {}
    if isinstance(said, dict):
        meta["usage"] = json.dumps(Usage.from_ai_sdk(said).snake())
    model = metadata.get("model")
    if isinstance(model, str) and 0 < len(model) <= MAX_MODEL_CHARS:
        meta["model"] = model
    return meta or None


def _text_of(events: list[dict[str, Any]]) -> str:
    """The text a batch adds to the generation's record: its text deltas, joined."""
    return "".join(
        e["delta"]
        for e in events
        if e.get("type") == "text-delta" and isinstance(e.get("delta"), str)
    )


def _with_wait(
    gid: str, after: int, events: list[dict[str, Any]], wait: Wait | None
) -> tuple[list[dict[str, Any]], dict[str, str] | None, dict[str, Any]]:
    """An append's events, ``meta`` and ``extras``: with a ``wait``, the approval
    requests after the batch and the waiting state; the steering messages recorded
    leave their list."""
    meta = None
    extras: dict[str, Any] = {}
    if wait is not None:
        held = waiting.suspension(gid, wait.asks, wait.seconds, after + len(events))
        events, meta, extras = [*events, *held.requests], held.meta, held.extras
    steered = sum(1 for e in events if e.get("type") == "data-steer")
    if steered:
        extras["ltrim"] = steered
    return events, meta, extras


def _steering(raw: list[bytes]) -> list[dict[str, Any]]:
    """The steering list's messages as the agent gets them: ``{id, text}`` each."""
    found = []
    for item in raw:
        try:
            message = json.loads(item)
        except ValueError:
            continue
        if isinstance(message, dict):
            found.append({"id": str(message.get("id")), "text": str(message.get("text") or "")})
    return cast(list[dict[str, Any]], found)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
