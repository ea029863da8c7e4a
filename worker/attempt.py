"""One attempt at a generation: claim its stream, plan how the attempt begins
(``worker.takeover``: a new generation's first call, or where an earlier attempt stopped),
run its steps (``worker.step_loop``) to the terminal event.

Every append is conditional on the seq this writer last wrote and on owning the stream,
so a worker that lost its job to another (or whose stream was cancelled) is refused and
stops instead of interleaving. Redis faults under a running attempt (an outage, a lost
reply, lost writes) are handled by ``StreamWriter`` (``worker.writer``); see
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from typing import Any

from broadcaster.core import tracing
from broadcaster.core.eventlog import AppendRefused, StreamFull, StreamNotFound
from broadcaster.core.logconfig import current_trace
from broadcaster.generations.chat_turns import TurnsGone, resolve
from broadcaster.generations.lifecycle import Claim, Generations
from broadcaster.generations.request import DEFAULT_MAX_STEPS
from worker.metrics import WorkerMetrics
from worker.model_call import Policy
from worker.providers.base import CACHE_KEY, Provider
from worker.sessions import Opening, Sessions
from worker.step_loop import StepRun, run_steps
from worker.takeover import Plan, fresh, plan_attempt
from worker.tools import ToolClash
from worker.writer import REDIS_DOWN, Backoff, StreamWriter, WritesLost

log = logging.getLogger("worker.generation")


async def _claimed_request(
    generations: Generations, stream_id: str, owner: str, claim: Claim
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The claimed generation's request, its chat's turns filled in, and its metadata;
    None when the stream is gone, or (ended with an error) when the turns are."""
    event_log = generations.log
    meta = await event_log.meta(stream_id)
    if meta is None:
        return None
    request: dict[str, Any] = json.loads(meta["request"])
    if tracing.traces.on:
        _trace_claim(stream_id, meta, claim)
    try:
        request = await resolve(event_log.redis, request, stream_id)
    except TurnsGone as exc:
        await _unsendable(generations, stream_id, owner, claim.last_seq, str(exc))
        return None
    return request, meta


async def claim_surely(
    generations: Generations, stream_id: str, owner: str, patience_s: float
) -> Claim | None:
    """``Generations.claim``, sent again while Redis does not answer (a failover, a cut
    connection), for up to ``patience_s``, backing off as the writer's appends do. Every
    try carries the same token: a claim whose reply was lost is found by it and answered
    as it was made, rather than refused as held by this very worker, whose generation then
    waited out the lease it had just taken."""
    token = secrets.token_hex(8)
    backoff = Backoff(patience_s)
    while True:
        try:
            return await generations.claim(stream_id, owner, token=token)
        except REDIS_DOWN as exc:
            delay = backoff.next()
            if delay is None:
                raise
            log.warning(
                "generation %s: claim unanswered (%s); asking again in %.2fs",
                stream_id,
                exc,
                delay,
            )
            await asyncio.sleep(delay)


async def run_generation(
    generations: Generations,
    provider: Provider,
    stream_id: str,
    owner: str,
    policy: Policy,
    *,
    metrics: WorkerMetrics | None = None,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run one generation to its terminal event. Raises ``AppendRefused`` if another
    writer (or a cancel) took the stream, ``Held`` if a live worker holds it, and
    ``StepBoundary`` at a step's end once ``stopping`` is set; cancellation stops the
    model call."""
    claim = await claim_surely(generations, stream_id, owner, policy.redis_patience_s)
    if claim is None:
        log.info("generation %s: already ended or gone; nothing to do", stream_id)
        return
    read = await _claimed_request(generations, stream_id, owner, claim)
    if read is None:
        return
    request, meta = read
    writer = StreamWriter(
        generations,
        stream_id,
        owner,
        claim.last_seq,
        metrics,
        request=request,
        patience_s=policy.redis_patience_s,
        stopping=stopping,
    )
    async with contextlib.AsyncExitStack() as opened:
        run = StepRun(
            provider,
            {**request, CACHE_KEY: request.get("chat_id") or stream_id},
            writer,
            policy,
            _message_id(request, meta, stream_id),
            min(int(request.get("max_steps") or DEFAULT_MAX_STEPS), policy.max_steps),
        )
        if isinstance(provider, Sessions):
            run = await _open_session(opened, run, provider)
        try:
            await _run_attempt(run, claim)
        except WritesLost as exc:
            await _lost_writes(run, exc)
        except StreamNotFound:
            # Its keys are gone and it could not be rebuilt: viewers are answered 404.
            log.error(
                "generation %s: its stream vanished from Redis and cannot be rebuilt", stream_id
            )


async def _unsendable(
    generations: Generations, stream_id: str, owner: str, seq: int, why: str
) -> None:
    """A chat answer whose history its chat no longer holds ends with an error."""
    log.warning("generation %s: %s", stream_id, why)
    writer = StreamWriter(generations, stream_id, owner, seq, None, request={})
    await writer.flush([_error(why)], meta={"error": why})


async def _open_session(
    opened: contextlib.AsyncExitStack, run: StepRun, provider: Sessions
) -> StepRun:
    """The attempt's session of an agent (``worker.sessions``), closed with the attempt:
    its steps are the step loop's calls, the calls it asks a person about are the tools
    the loop gates, and a step cut off with its worker is made again (an agent cannot be
    asked to go on from a partial text)."""
    writer = run.writer

    async def history() -> list[dict[str, Any]]:
        await writer.flush()
        return await _events(writer, writer.seq)

    opening = Opening(writer.stream_id, run.request, history, run.policy.tools.approval_timeout_s)
    session = await opened.enter_async_context(provider.session(opening))
    policy = dataclasses.replace(run.policy, tools=session.tools, takeover="restart")
    return dataclasses.replace(run, provider=session, policy=policy, session=True)


async def _lost_writes(run: StepRun, exc: WritesLost) -> None:
    """Viewers may have seen events Redis no longer holds: end the stream with an error
    right where it now is, so nobody is shown a spliced stream (a viewer whose resume
    point is past it gets 409)."""
    stream_id = run.writer.stream_id
    log.error("generation %s: %s", stream_id, exc)
    with contextlib.suppress(AppendRefused):
        await run.writer.log.append(
            stream_id,
            [_error("events of this generation were lost by the server; start over")],
            kind="generation",
            meta={"error": "events lost by Redis"},
        )


async def _run_attempt(run: StepRun, claim: Claim) -> None:
    writer, policy = run.writer, run.policy
    stream_id = writer.stream_id
    if claim.lost >= policy.max_attempts:  # workers lost; hand-backs do not count
        await writer.flush(
            [_error(f"gave up after {policy.max_attempts} attempts (workers were lost)")],
            meta={"error": "worker lost too many times"},
        )
        return
    try:
        offered = policy.tools.offer(run.request)
    except ToolClash as exc:
        await writer.flush([_error(str(exc))], meta={"error": str(exc)})
        return
    plan = fresh(claim.attempt) if claim.last_seq == 0 else await _plan(run, claim)
    log.info("generation %s: attempt %d from seq %d", stream_id, claim.attempt, claim.last_seq)
    try:
        await run_steps(dataclasses.replace(run, request=offered), plan)
    except StreamFull as exc:
        # Only a terminal event fits now; the model call is already closed.
        log.warning("generation %s: %s", stream_id, exc)
        writer.discard()
        await writer.flush(
            [_error("the generation reached the stream's size limit")],
            meta={"error": "stream size limit reached"},
        )


async def _plan(run: StepRun, claim: Claim) -> Plan:
    """The plan of an attempt that takes the generation over, from the stream an earlier
    attempt left (``worker.takeover``); the notice that closes a cut step appended first."""
    writer = run.writer
    meta = await writer.log.meta(writer.stream_id) or {}
    plan = await plan_attempt(
        await _events(writer, claim.last_seq),
        meta,
        run.provider,
        attempt=claim.attempt,
        lost_worker=not claim.decided,
        mode=run.policy.takeover,
    )
    if plan.notice is not None:
        notice = plan.notice
        await writer.flush(notice.events, meta=notice.meta, text_reset=notice.text_reset)
        log.info(
            "generation %s: cut step goes on (%s) in attempt %d",
            writer.stream_id,
            notice.mode,
            claim.attempt,
        )
    return plan


async def _events(writer: StreamWriter, until: int) -> list[dict[str, Any]]:
    """The stream's events up to seq ``until``."""
    return [
        e.json() async for page in writer.log.read_after(writer.stream_id, 0, until) for e in page
    ]


def _trace_claim(stream_id: str, meta: dict[str, str], claim: Claim) -> None:
    """What came before this claim, as spans of the generation's trace measured after the
    fact: the wait in the queue; a takeover (another worker was lost, or handed it back):
    from its last append to now; or a person's decision: the approval wait, then the
    queue."""
    now = time.time_ns()
    parent = current_trace.get()  # the request's span: the waits came before this run
    attributes: dict[str, Any] = {
        "broadcaster.generation.id": stream_id,
        "broadcaster.attempt": claim.attempt,
        "broadcaster.resumed_from_seq": claim.last_seq,
    }
    updated_ns = int(meta.get("updated_at") or 0) * 1_000_000 or now
    if claim.attempt > 1:
        # A child of this worker's run: who took it over, after how long.
        tracing.mark("takeover", updated_ns, attributes, event="taken_over")
        return
    wait = json.loads(meta.get("wait") or "{}") if claim.last_seq else {}
    if wait.get("asked_ms"):
        asked_ns = int(wait["asked_ms"]) * 1_000_000
        tools = sorted({str(a.get("toolName")) for a in wait.get("approvals", [])})
        attributes["gen_ai.tool.name"] = ",".join(tools)
        tracing.mark("approval.wait", asked_ns, attributes, parent=parent, end_ns=updated_ns)
        tracing.mark("queue.wait", updated_ns, attributes, parent=parent)
        return
    created_ns = int(meta.get("created_at") or 0) * 1_000_000 or now
    tracing.mark("queue.wait", min(created_ns, now), attributes, parent=parent)


def _message_id(request: dict[str, Any], meta: dict[str, str], stream_id: str) -> str:
    """The ``start`` event's ``messageId``: the UI message a chat continues (its endpoint
    stores ``ui_message_id`` with the request, or in the stream's metadata), else the
    generation's id."""
    given = request.get("ui_message_id") or meta.get("ui_message_id")
    return given if isinstance(given, str) and given else stream_id


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "errorText": text}


__all__ = ["AppendRefused", "Policy", "run_generation"]
