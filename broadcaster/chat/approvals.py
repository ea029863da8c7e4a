"""Decisions on the tool calls a generation waits on (``worker.step_loop``'s suspension),
and the sweep that denies the ones nobody decided in time.

A waiting generation's metadata holds its wait (``wait``: the approvals, the deadline,
the seq of its last request), the decisions so far (``decided``) and, as its ``owner``, a
wait token. A decision is one conditional append, on that token, of a ``data-approval``
event (transient: the AI SDK's message keeps none) that also records it in ``decided``
and changes the token; the first decision on an approval wins, a racing second finds the
token changed, reads again and sees it decided. The append that decides the last one
also makes the generation ``queued`` again (with ``resume``, so that its claim counts no
attempt) and the front-end queues its job: any worker resumes it from the stream.

A front-end sweeps a waiting set (``keys.waiting_key``, one per slot group, 256 in all)
when its earliest deadline comes, one front-end at a time (``keys.WAIT_SWEEP_LOCK``): an
expired wait is denied (``reason`` says so), and a decided one whose job no worker has
claimed after ``REQUEUE_AFTER_S`` (its front-end died between the decision and the
queuing) is queued again. Nothing polls: each front-end keeps the earliest deadline of
each set it knows of, and one timer to the earliest of them. It learns them from pushes
(``woken``: the append that puts a generation in a waiting set publishes ``wait <ms>
<id>`` on the wake channels, ``keys.wake_channel``) and from its own reads (a sweep
reads a set's next deadline with its expired waits, in the same command). Every
front-end hears every push, so each sweeps the set when the deadline comes (the first
does the denying; the others, a moment later, find nothing due and learn the next
deadline). Besides: every set once the wake channels are joined (at start-up) and after
they were lost a while (``missed`` both times), and ``SAFETY_GROUPS`` of them every
``SAFETY_EVERY`` seconds, in turn (read without the lock; one found expired is then
swept under it), so that a deadline whose push was lost is found all the same (every
set within 256 / 8 minutes, half an hour: the timeouts are counted in minutes, and
pushes are lost only with the connection, after which every set is swept).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from broadcaster.chat import binding
from broadcaster.chat.binding import Expired, Mismatch
from broadcaster.core import contain, keys
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import EventLog, StaleWriter, StreamEnded, StreamNotFound
from broadcaster.core.lock import Lock
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.request import RequestInvalid

log = logging.getLogger("broadcaster.approvals")

REQUEUE_AFTER_S = 30.0
"""A decided generation no worker claimed within this long is queued again."""
SAFETY_EVERY = 60.0
"""Seconds between the sweeps no deadline asked for (``SAFETY_GROUPS`` sets each)."""
SAFETY_GROUPS = 8
"""Waiting sets swept in each safety round: one command each."""
SWEEP_READ = 100
"""Waits read per set and sweep; a set with more expired sweeps again at once."""
LOCK_MS = 5000
"""How long the sweep's lock outlives a front-end that died in the middle of a sweep."""
LOCK_RETRY_S = 0.5
"""A front-end that finds another sweeping looks again this much later."""


EXPIRED = "No decision was made in time: the call was denied."
"""The reason of the sweep's denials."""


def _decision(approved: bool, reason: str | None) -> str:
    return "approved" if approved else "expired" if reason == EXPIRED else "denied"


class ApprovalBody(BaseModel):
    """A decision on a tool call a generation waits on."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
    approvalId: str = Field(min_length=1, max_length=256)
    approved: StrictBool
    """JSON ``true`` or ``false`` only: ``"yes"`` or ``0`` decide nothing (422)."""
    reason: str | None = Field(None, max_length=4096)
    toolCallId: str | None = Field(None, min_length=1, max_length=256)
    """The call decided on: 409 ``approval_mismatch`` unless it is the approval's."""
    inputHash: str | None = Field(None, min_length=64, max_length=64)
    """SHA-256 (hex) of the approved input's RFC 8785 JSON (``binding.input_hash``): 409
    ``approval_mismatch`` unless it is the approval's input's (docs/resuming.md)."""


def parse_decision(body: Any) -> ApprovalBody:
    """The decision a request's body makes, or ``RequestInvalid``."""
    try:
        return ApprovalBody.model_validate(body)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestInvalid("invalid decision", details) from None


class NoSuchApproval(LookupError):
    """The generation asks for no approval of that id (or does not exist)."""


__all__ = ["Expired", "Mismatch"]  # what a decision may also raise (``binding``)

EXPIRED_CHUNK = "data-approval-expired"
"""The transient chunk the sweep's denial carries, next to its ``data-approval``: every
viewer of the generation sees the approval expire (then, once a worker resumes it, the
call's ``tool-output-denied``)."""


class WaitEnded(Exception):
    """The generation no longer waits on that approval undecided: it ended (stopped while
    it waited)."""


@dataclass(frozen=True, slots=True)
class Decision:
    approval_id: str
    approved: bool
    """The decision in force: this request's if it won, else the one that came first."""
    won: bool
    resumed: bool
    """This decision was the last the wait needed: the generation is queued again."""
    wait_seq: int
    """The seq of the wait's last approval request: an answer that continues the message
    starts after it."""


def _json(raw: str | None, default: Any) -> Any:
    return json.loads(raw) if raw else default


def _said(
    approval_id: str, approval: dict[str, Any], record: dict[str, Any], expiry: int | None
) -> list[dict[str, Any]]:
    """What a decision appends: ``data-approval``, and ``data-approval-expired`` (with
    the deadline, ``expiry``) when the sweep denies it at its deadline."""
    data = {"approvalId": approval_id, "toolCallId": approval["toolCallId"], **record}
    said = [{"type": "data-approval", "id": approval_id, "data": data, "transient": True}]
    if expiry is not None:
        ended = {**data, "expiresAt": binding.expires_at(expiry)}
        said.append({"type": EXPIRED_CHUNK, "id": approval_id, "data": ended, "transient": True})
    return said


def _after(decided: dict[str, Any], done: bool) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The metadata a decision leaves (and, for the last, the requeue's deadline)."""
    new_meta = {
        "decided": json.dumps(decided, separators=(",", ":")),
        "owner": "decided" if done else f"wait:{secrets.token_hex(6)}",
    }
    if not done:
        return new_meta, None
    new_meta |= {"status": "queued", "resume": "1"}
    return new_meta, {"zadd": int((time.time() + REQUEUE_AFTER_S) * 1000)}


@dataclass(frozen=True, slots=True)
class _Wait:
    """A waiting generation's metadata, read: its approvals by id, the decisions so far."""

    meta: dict[str, str]
    approvals: dict[str, dict[str, Any]]
    decided: dict[str, Any]
    seq: int
    deadline_ms: int
    asked_ms: object

    @classmethod
    def read(cls, generation: str, meta: dict[str, str] | None, approval_id: str) -> _Wait:
        """``NoSuchApproval`` unless ``generation`` is one that asked for ``approval_id``."""
        if not meta or meta.get("kind") != "generation":
            raise NoSuchApproval(generation)
        wait = _json(meta.get("wait"), {})
        approvals = {a["approvalId"]: a for a in wait.get("approvals", [])}
        if approval_id not in approvals:
            raise NoSuchApproval(approval_id)
        decided = _json(meta.get("decided"), {})
        seq, deadline_ms = int(wait.get("seq") or 0), int(wait.get("deadline_ms") or 0)
        return cls(meta, approvals, decided, seq, deadline_ms, wait.get("asked_ms"))


class Approvals:
    def __init__(self, event_log: EventLog, jobs: JobQueue) -> None:
        self.log = event_log
        self.jobs = jobs
        self.on_decided: Callable[[object, str], None] = lambda asked_ms, decision: None
        """Told of each decision that won: the wait's ``asked_ms`` and how it ended."""
        self.sweeps = 0
        self._deadlines: dict[str, int] = {}
        """Each waiting set's earliest deadline this front-end knows of (ms; at most 256)."""
        self._full = False
        """The next sweep reads every set: pushes may have been lost (``missed``), as all
        before the wake channels were joined at start-up (a sweep before then would be
        done again once they are)."""
        self._turn = 0
        self._changed = asyncio.Event()

    def woken(self, kind: str, arg: str) -> None:
        """A push on the wake channels: ``wait <deadline ms> <generation>``."""
        if kind != "wait":
            return
        deadline, _, generation = arg.partition(" ")
        try:
            self._learn(keys.waiting_key(generation), int(deadline))
        except ValueError:
            log.warning("a wake message that says no deadline: %r", arg)

    def missed(self) -> None:
        """Pushes may have been missed (the wake channels were lost): every set."""
        self._full = True
        self._changed.set()

    def _learn(self, key: str, deadline: int) -> None:
        if deadline < self._deadlines.get(key, deadline + 1):
            self._deadlines[key] = deadline
            self._changed.set()

    async def pending(self, generation: str) -> list[dict[str, Any]]:
        """The approvals ``generation`` waits on now (empty unless it is waiting)."""
        meta = await self.log.meta(generation)
        if not meta or meta.get("status") != "waiting":
            return []
        decided = _json(meta.get("decided"), {})
        wait = _json(meta.get("wait"), {})
        return [a for a in wait.get("approvals", []) if a["approvalId"] not in decided]

    async def decide(
        self,
        generation: str,
        approval_id: str,
        approved: bool,
        reason: str | None = None,
        *,
        tool_call_id: str | None = None,
        input_hash: str | None = None,
        expiring: bool = False,
    ) -> Decision:
        """Record a person's decision (the first one on an approval wins); ``Expired``
        after the deadline, ``Mismatch`` for another call or input (``binding.check``).
        ``expiring``: the sweep's denial, with ``data-approval-expired``."""
        for _ in range(20):  # each retry follows another decision: bounded by the approvals
            wait = _Wait.read(generation, await self.log.meta(generation), approval_id)
            if approval_id in wait.decided:  # decided before: that decision stands
                first = wait.decided[approval_id]
                if not expiring and first.get("reason") == EXPIRED:
                    raise Expired(approval_id)
                return Decision(approval_id, bool(first.get("approved")), False, False, wait.seq)
            now_ms = int(time.time() * 1000)
            bound = (tool_call_id, input_hash)
            deadline_ms = 0 if expiring else wait.deadline_ms
            binding.check(wait.approvals[approval_id], deadline_ms, now_ms, *bound)
            if wait.meta.get("ended") or wait.meta.get("status") != "waiting":
                raise WaitEnded(generation)
            record: dict[str, Any] = {"approved": approved} | ({"reason": reason} if reason else {})
            try:
                done = await self._record(generation, wait, approval_id, record, expiring)
            except StaleWriter:
                continue  # another decision came first: read again
            if done:
                await self._enqueue(generation, self._provider(wait.meta))
                log.info("generation %s: every decision made; queued again", generation)
            self.on_decided(wait.asked_ms, _decision(approved, reason))
            return Decision(approval_id, approved, True, done, wait.seq)
        raise WaitEnded(generation)  # pragma: no cover: 20 decisions racing one

    async def _record(
        self, generation: str, wait: _Wait, approval_id: str, record: dict[str, Any], expiring: bool
    ) -> bool:
        """Append the decision on the wait's token (``StaleWriter`` if another changed it
        first); whether it was the last the wait needed."""
        decided = {**wait.decided, approval_id: record}
        expiry = wait.deadline_ms if expiring else None
        said = _said(approval_id, wait.approvals[approval_id], record, expiry)
        done = all(a in decided for a in wait.approvals)
        new_meta, extras = _after(decided, done)
        try:
            await self.log.append(
                generation,
                said,
                kind="generation",
                owner=wait.meta.get("owner") or "-",
                meta=new_meta,
                extras=extras,
            )
        except (StreamEnded, StreamNotFound):
            raise WaitEnded(generation) from None
        return done

    async def _enqueue(self, generation: str, provider: str) -> None:
        """Queue the generation's job again; acknowledged once the committer confirms it
        (as ``generations.start`` confirms a new job)."""
        await self.jobs.enqueue(generation, provider)
        await self.log.durability.confirm(keys.jobs_key(provider))

    @staticmethod
    def _provider(meta: dict[str, str]) -> str:
        provider = _json(meta.get("request"), {}).get("provider")
        return provider if isinstance(provider, str) and provider else "anthropic"

    async def sweep(self, which: list[str] | None = None) -> int:
        """Deny the expired waits of the sets ``which`` (every set by default), queue
        again the decided generations nobody claimed, and learn each set's next deadline;
        how many waits were denied."""
        which = keys.waiting_keys() if which is None else which
        found, now = await self._read(which)
        self.sweeps += 1
        denied = 0
        for key, members in zip(which, found, strict=True):
            for raw, score in members:
                if score > now:
                    continue
                generation = raw.decode(errors="replace")
                try:
                    denied += await self._expired(key, generation)
                except REDIS_ERRORS:
                    raise
                except Exception:  # this generation's alone: the others' waits go on
                    contain.loop_failed("expired-approvals", log, f"generation {generation}")
        return denied

    async def _look(self, which: list[str]) -> None:
        """Learn the next deadline of the sets ``which`` (an expired one: at once, for a
        sweep under the lock); one command each, no lock."""
        found, now = await self._read(which)
        for key, members in zip(which, found, strict=True):
            expired = [score for _, score in members if score <= now]
            if expired:
                self._learn(key, int(min(expired)))

    async def _read(self, which: list[str]) -> tuple[list[list[tuple[bytes, float]]], int]:
        """The first waits of each set of ``which``, with their deadlines, and now (ms);
        each set's next deadline (after now) learnt."""
        now = int(time.time() * 1000)
        before = dict(self._deadlines)
        async with self.log.redis.pipeline(transaction=False) as pipe:
            for key in which:
                pipe.zrangebyscore(key, "-inf", "+inf", start=0, num=SWEEP_READ, withscores=True)
            found: list[list[tuple[bytes, float]]] = await pipe.execute()
        for key, members in zip(which, found, strict=True):
            if self._deadlines.get(key) == before.get(key):
                self._deadlines.pop(key, None)  # (not one a push brought meanwhile)
            later = [int(score) for _, score in members if score > now]
            if later:
                self._learn(key, min(later))
            elif len(members) >= SWEEP_READ:
                self._learn(key, now)  # more expired than one read: again at once
        return found, now

    async def _expired(self, key: str, generation: str) -> int:
        meta = await self.log.meta(generation)
        status = (meta or {}).get("status")
        # The sweep's writes go through the committer (BROADCASTER_DURABILITY), as the
        # appends do: a requeue a failover could still lose is not acted on.
        durability = self.log.durability
        if meta is None or meta.get("ended") or status == "running":
            await durability.command(key, "ZREM", key, generation)
            return 0
        if status == "queued":
            if meta.get("resume"):
                log.warning("generation %s: decided but not claimed; queued again", generation)
                again = int((time.time() + REQUEUE_AFTER_S) * 1000)
                await durability.command(key, "ZADD", key, again, generation)
                self._learn(key, again)
                await self._enqueue(generation, self._provider(meta))
            else:
                await durability.command(key, "ZREM", key, generation)
            return 0
        reason = EXPIRED
        denied = 0
        for approval in await self.pending(generation):
            try:
                decision = await self.decide(
                    generation, approval["approvalId"], False, reason, expiring=True
                )
            except (NoSuchApproval, WaitEnded):
                return denied
            denied += int(decision.won)
        if denied:
            log.info("generation %s: %d approval(s) timed out; denied", generation, denied)
        return denied

    def _due(self) -> list[str]:
        now = int(time.time() * 1000)
        return [key for key, deadline in self._deadlines.items() if deadline <= now]

    def _safety_slice(self) -> list[str]:
        every = keys.waiting_keys()
        first = self._turn % len(every)
        self._turn += SAFETY_GROUPS
        return every[first : first + SAFETY_GROUPS]

    async def run(self, every: float | None = None) -> None:
        """Sweep the sets whose deadlines came (and the safety rounds: ``SAFETY_EVERY``
        by default, or ``every``), one front-end at a time, until cancelled."""
        lock = Lock(self.log.redis, keys.WAIT_SWEEP_LOCK, LOCK_MS)
        safety_every = SAFETY_EVERY if every is None else every
        loop = asyncio.get_running_loop()
        next_safety = loop.time() + safety_every
        outage = contain.Outage("looking for expired approvals", log)
        while True:
            due = self._due()
            safety = loop.time() >= next_safety
            if not (due or safety or self._full):
                wait = next_safety - loop.time()
                if self._deadlines:
                    soonest = min(self._deadlines.values()) - time.time() * 1000
                    wait = min(wait, max(0.0, soonest / 1000))
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                continue
            try:
                if safety and not (due or self._full):
                    # A few sets, read without the lock: a deadline found due is swept next.
                    await self._look(self._safety_slice())
                    next_safety = loop.time() + safety_every
                elif await lock.take():
                    full, self._full = self._full, False
                    which = keys.waiting_keys() if full else due
                    try:
                        await self.sweep(which)
                        if full:
                            next_safety = loop.time() + safety_every
                    except BaseException:
                        self._full = self._full or full
                        raise
                    finally:
                        await lock.release()
                else:
                    await asyncio.sleep(LOCK_RETRY_S)  # another sweeps: then this one
                outage.ok()
            except REDIS_ERRORS as exc:
                await asyncio.sleep(outage.failed(exc))
            except Exception:
                contain.loop_failed("expired-approvals", log)
                await asyncio.sleep(contain.BACKOFF)
