"""The steps of one attempt: a model call, the worker's tools it called
(``worker.step_tools``), and the next step with their results, until the model stops, a
tool the worker does not have is called, or ``max_steps`` is reached; the attempt's plan
(``worker.takeover``) says what it does first.

A step's model output is appended with ``steps_done`` (``worker.transcript``), then each
tool's output in its own append. Steering: the chat messages waiting in the
generation's steering list become ``data-steer`` events in the append of the step's
``finish-step``, which drops exactly those from the list, and the next call's user turn
carries them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.continuation import continuation_request
from worker.mapping import EventMapper
from worker.model_call import CallFailed, Policy, call_model
from worker.providers.base import Provider
from worker.sessions import GOES_ON
from worker.splice import Seam, SeamTrim
from worker.step_tools import run_tools
from worker.takeover import Call, Continue, Move, Plan, Progress, Reattach, RunTools
from worker.transcript import Step, step_messages
from worker.writer import StreamWriter

log = logging.getLogger("worker.generation")


@dataclass(frozen=True, slots=True)
class StepRun:
    """What an attempt's steps are run with."""

    provider: Provider
    request: dict[str, Any]
    """The stored request, with the worker's tools offered."""
    writer: StreamWriter
    policy: Policy
    message_id: str
    max_steps: int
    session: bool = False
    """The provider is a session (an agent, ``worker.sessions``): a step whose output was
    whole goes on with the agent's next step rather than ending the generation."""


async def run_steps(run: StepRun, plan: Plan) -> None:
    """Follow ``plan``, then run steps to the generation's terminal event (``finish`` or
    ``error``)."""
    progress = plan.progress
    move: Move = plan.first
    if isinstance(move, RunTools):
        # The last step's model output was whole: run only what is missing.
        reason = GOES_ON if run.session else "tool-calls"
        step = progress.steps[-1]
        if await _after_model(run, progress, step, reason, lost_run=move.lost_run):
            return
        move = Call()
    while True:
        try:
            step, mapper = await _model_call(run, progress, move)
        except CallFailed as exc:
            _add_usage(progress, exc.mapper)
            log.warning("generation %s failed: %s", run.writer.stream_id, exc.error.message)
            meta = {"error": exc.error.message, **progress.tally.meta()}
            await run.writer.flush([_error(exc.error.message)], meta=meta)
            return
        progress.started = True
        _add_usage(progress, mapper)
        progress.steps.append(step)
        reason = mapper.finish_reason
        await _mark_whole(run, progress, step, reason)
        if await _after_model(run, progress, step, reason):
            return
        move = Call()


async def _model_call(run: StepRun, progress: Progress, move: Move) -> tuple[Step, EventMapper]:
    """The step's model call as ``move`` says: a new step's, a cut step's continued, or
    a cut call re-attached to."""
    request = step_messages(run.request, progress.steps)
    if isinstance(move, Continue):
        request = continuation_request(request, move.turn)
    elif isinstance(move, Reattach):
        request = move.request(request)
    step, mapper = await call_model(
        run.provider,
        request,
        run.writer,
        run.policy,
        message_id=run.message_id,
        started=progress.started,
        id_prefix=progress.id_prefix,
        seam=_seam(move) if isinstance(move, Continue) else None,
        restarts=isinstance(move, Call) and move.restarts,
    )
    if isinstance(move, Continue):
        step.events = [*move.events, *step.events]
    elif isinstance(move, Reattach):
        step.events[:0] = move.shown
    else:
        progress.stream_steps += 1
    return step, mapper


def _add_usage(progress: Progress, mapper: EventMapper) -> None:
    if mapper.started:
        progress.tally.add(mapper.usage, mapper.model)


def _seam(going_on: Continue) -> Callable[[], Seam]:
    return lambda: Seam(going_on.open_text, SeamTrim(going_on.partial_text))


def _runs_tools(run: StepRun, step: Step, reason: str) -> bool:
    """The step ends with tools the worker runs (or an agent's next step follows)."""
    tools = run.policy.tools
    return reason == GOES_ON or (
        reason == "tool-calls" and any(tools.runs(c.name) for c in step.calls())
    )


async def _mark_whole(run: StepRun, progress: Progress, step: Step, reason: str) -> None:
    """Append the step's last model events with ``steps_done``, when the worker goes on
    after it: its output is whole."""
    if not _runs_tools(run, step, reason):
        return
    if not run.writer.pending:
        # The call holds its last block's events back for this append; without them a
        # takeover would see the output as cut off and make the call again.
        log.warning("generation %s: no event to carry steps_done", run.writer.stream_id)
    marker = {"steps_done": str(progress.stream_steps), "steps_model": progress.tally.model or ""}
    await run.writer.flush(meta={**marker, **progress.tally.meta()})


async def _after_model(
    run: StepRun, progress: Progress, step: Step, reason: str, *, lost_run: bool = False
) -> bool:
    """The step's model output is whole: end the generation, or run the worker's tools it
    called and end the step. True when the generation has ended, or waits for a person."""
    tools = run.policy.tools
    if not _runs_tools(run, step, reason):
        await _finish(run, progress, reason)
        return True
    if await run_tools(run.writer, tools, step, lost_run=lost_run):
        return True  # suspended: the decision queues the generation again
    if any(not tools.runs(c.name) for c in step.calls()):
        await _finish(run, progress, "tool-calls")  # the client runs the rest
        return True
    if len(progress.steps) >= run.max_steps:
        log.info("generation %s: max_steps (%d) reached", run.writer.stream_id, run.max_steps)
        await _finish(run, progress, "other" if reason == GOES_ON else "tool-calls")
        return True
    steering, extras = await _steering(run)
    step.events += [{"type": "finish-step"}, *steering]
    await run.writer.flush([{"type": "finish-step"}, *steering], extras=extras)
    return False


async def _steering(run: StepRun) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The steering messages waiting for the next step, as ``data-steer`` events, and the
    append's extras that drop exactly those from the list."""
    raw = await run.writer.generations.steering(run.writer.stream_id)
    if not raw:
        return [], None
    events = []
    for item in raw:
        message = json.loads(item)
        data = {"id": str(message.get("id")), "text": str(message.get("text") or "")}
        events.append({"type": "data-steer", "id": data["id"], "data": data})
    log.info(
        "generation %s: %d steering message(s) for the next step", run.writer.stream_id, len(raw)
    )
    return events, {"ltrim": len(raw)}


async def _finish(run: StepRun, progress: Progress, reason: str) -> None:
    tally = progress.tally
    finish = {
        "type": "finish",
        "finishReason": reason,
        "messageMetadata": tally.finish_metadata(),
    }
    await run.writer.flush([{"type": "finish-step"}, finish], meta=tally.meta())


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "errorText": text}


__all__ = ["StepRun", "run_steps"]
