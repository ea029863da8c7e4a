"""Decisions on the tool calls a generation waits on (``worker.stepper``'s suspension),
and the sweep that denies the ones nobody decided in time.

A waiting generation's metadata holds its wait (``wait``: the approvals, the deadline,
the seq of its last request), the decisions so far (``decided``) and, as its ``owner``, a
wait token. A decision is one conditional append, on that token, of a ``data-approval``
event (transient: the AI SDK's message keeps none) that also records it in ``decided``
and changes the token; the first decision on an approval wins, a racing second finds the
token changed, reads again and sees it decided. The append that decides the last one
also makes the generation ``queued`` again (with ``resume``, so that its claim counts no
attempt) and the front-end queues its job: any worker resumes it from the stream.

The front-ends sweep the waiting sets (``keys.waiting_key``) every ``SWEEP_EVERY``
seconds (one command per slot group, 256 in all: sweeping often would cost every
deployment that much all the time, for timeouts counted in minutes), one of them per
round (``keys.WAIT_SWEEP_LOCK``): an expired wait is denied (``reason`` says so), and a
decided one whose job no worker has claimed after ``REQUEUE_AFTER_S`` (its front-end
died between the decision and the queuing) is queued again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.core import contain, keys
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import EventLog, StaleWriter, StreamEnded, StreamNotFound
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.request import RequestInvalid

log = logging.getLogger("broadcaster.approvals")

REQUEUE_AFTER_S = 30.0
"""A decided generation no worker claimed within this long is queued again."""
SWEEP_EVERY = 5.0
"""Seconds between sweeps: an expired wait is denied within this much of its deadline."""


EXPIRED = "No decision was made in time: the call was denied."
"""The reason of the sweep's denials."""


def _decision(approved: bool, reason: str | None) -> str:
    return "approved" if approved else "expired" if reason == EXPIRED else "denied"


class ApprovalBody(BaseModel):
    """A decision on a tool call a generation waits on."""

    model_config = ConfigDict(extra="forbid")
    approvalId: str = Field(min_length=1, max_length=256)
    approved: bool
    reason: str | None = Field(None, max_length=4096)


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


class Approvals:
    def __init__(self, event_log: EventLog, jobs: JobQueue) -> None:
        self.log = event_log
        self.jobs = jobs
        self.on_decided: Callable[[object, str], None] = lambda asked_ms, decision: None
        """Told of each decision that won: the wait's ``asked_ms`` and how it ended."""

    async def pending(self, generation: str) -> list[dict[str, Any]]:
        """The approvals ``generation`` waits on now (empty unless it is waiting)."""
        meta = await self.log.meta(generation)
        if not meta or meta.get("status") != "waiting":
            return []
        decided = _json(meta.get("decided"), {})
        wait = _json(meta.get("wait"), {})
        return [a for a in wait.get("approvals", []) if a["approvalId"] not in decided]

    async def decide(
        self, generation: str, approval_id: str, approved: bool, reason: str | None = None
    ) -> Decision:
        """Record a person's decision (the first one on an approval wins)."""
        for _ in range(20):  # each retry follows another decision: bounded by the approvals
            meta = await self.log.meta(generation)
            if not meta or meta.get("kind") != "generation":
                raise NoSuchApproval(generation)
            wait = _json(meta.get("wait"), {})
            approvals = {a["approvalId"]: a for a in wait.get("approvals", [])}
            decided: dict[str, Any] = _json(meta.get("decided"), {})
            wait_seq = int(wait.get("seq") or 0)
            if approval_id not in approvals:
                raise NoSuchApproval(approval_id)
            if approval_id in decided:  # decided before: that decision stands
                first = decided[approval_id]
                return Decision(approval_id, bool(first.get("approved")), False, False, wait_seq)
            if meta.get("ended") or meta.get("status") != "waiting":
                raise WaitEnded(generation)
            record: dict[str, Any] = {"approved": approved}
            if reason:
                record["reason"] = reason
            decided[approval_id] = record
            data = {
                "approvalId": approval_id,
                "toolCallId": approvals[approval_id]["toolCallId"],
                **record,
            }
            event = {"type": "data-approval", "id": approval_id, "data": data, "transient": True}
            done = all(a in decided for a in approvals)
            new_meta = {
                "decided": json.dumps(decided, separators=(",", ":")),
                "owner": "decided" if done else f"wait:{secrets.token_hex(6)}",
            }
            extras = None
            if done:
                new_meta |= {"status": "queued", "resume": "1"}
                extras = {"zadd": int((time.time() + REQUEUE_AFTER_S) * 1000)}
            try:
                await self.log.append(
                    generation,
                    [event],
                    kind="generation",
                    owner=meta.get("owner") or "-",
                    meta=new_meta,
                    extras=extras,
                )
            except StaleWriter:
                continue  # another decision came first: read again
            except (StreamEnded, StreamNotFound):
                raise WaitEnded(generation) from None
            if done:
                await self.jobs.enqueue(generation, self._provider(meta))
                log.info("generation %s: every decision made; queued again", generation)
            self.on_decided(wait.get("asked_ms"), _decision(approved, reason))
            return Decision(approval_id, approved, True, done, wait_seq)
        raise WaitEnded(generation)  # pragma: no cover: 20 decisions racing one

    @staticmethod
    def _provider(meta: dict[str, str]) -> str:
        provider = _json(meta.get("request"), {}).get("provider")
        return provider if isinstance(provider, str) and provider else "anthropic"

    async def sweep(self) -> int:
        """Deny the expired waits, queue again the decided generations nobody claimed;
        how many waits were denied."""
        now = int(time.time() * 1000)
        async with self.log.redis.pipeline(transaction=False) as pipe:
            for key in keys.waiting_keys():
                pipe.zrangebyscore(key, "-inf", now, start=0, num=100)
            found = await pipe.execute()
        denied = 0
        for key, members in zip(keys.waiting_keys(), found, strict=True):
            for raw in members:
                generation = raw.decode(errors="replace")
                try:
                    denied += await self._expired(key, generation)
                except REDIS_ERRORS:
                    raise
                except Exception:  # this generation's alone: the others' waits go on
                    contain.loop_failed("expired-approvals", log, f"generation {generation}")
        return denied

    async def _expired(self, key: str, generation: str) -> int:
        meta = await self.log.meta(generation)
        status = (meta or {}).get("status")
        if meta is None or meta.get("ended") or status == "running":
            await self.log.redis.zrem(key, generation)
            return 0
        if status == "queued":
            if meta.get("resume"):
                log.warning("generation %s: decided but not claimed; queued again", generation)
                await self.log.redis.zadd(
                    key, {generation: int((time.time() + REQUEUE_AFTER_S) * 1000)}
                )
                await self.jobs.enqueue(generation, self._provider(meta))
            else:
                await self.log.redis.zrem(key, generation)
            return 0
        reason = EXPIRED
        denied = 0
        for approval in await self.pending(generation):
            try:
                decision = await self.decide(generation, approval["approvalId"], False, reason)
            except (NoSuchApproval, WaitEnded):
                return denied
            denied += int(decision.won)
        if denied:
            log.info("generation %s: %d approval(s) timed out; denied", generation, denied)
        return denied

    async def run(self, every: float | None = None) -> None:
        """Sweep every ``every`` seconds, one front-end per round, until cancelled."""
        me = secrets.token_hex(4)
        every = SWEEP_EVERY if every is None else every
        outage = contain.Outage("looking for expired approvals", log)
        while True:
            await asyncio.sleep(outage.pause(every))
            try:
                lock_ms = int(every * 1000)
                if await self.log.redis.set(keys.WAIT_SWEEP_LOCK, me, nx=True, px=lock_ms):
                    await self.sweep()
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("expired-approvals", log)
