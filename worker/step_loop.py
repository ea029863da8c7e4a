"""The steps of one attempt: a model call, the worker's tools it called, and the next step
with their results, until the model stops, a tool the worker does not have is called, or
``max_steps`` is reached.

One ``start`` and one ``finish`` per generation; each step between ``start-step`` and
``finish-step``. When the model calls tools the worker runs, the step's model output is
appended together with ``steps_done`` in the stream's metadata (``worker.transcript``), then
each tool's output as soon as it has run, each in its own append: a worker that takes the
generation over finds every tool that has run in the stream and runs only the others.
Tools run one after the other, in the order the model called them.

**Waiting for a person.** A call of a tool registered as needing approval
(``Tool.needs_approval``) runs only once a person has decided. Without a decision in the
stream the step's other tools run, then one append adds a ``tool-approval-request`` per
undecided call and *suspends* the generation: its status becomes ``waiting``, its owner a
wait token (so no worker's append passes), its wait (the approvals, the deadline) goes
into its metadata, it joins its group's waiting set (``keys.waiting_key``) and an
``approval.requested`` webhook event is queued, all in that one step. The attempt then
ends like a finished one: the job is acknowledged, the model call is long closed, no slot
or lease is held. The decision (a front-end's append of ``data-approval``) queues the job
again; the next worker resumes here, from the stream: approved calls run (once: their
output is in the stream from then on), denied ones get ``tool-output-denied``, and the
model is sent the denial as the call's result.

**Steering.** Before the next step's model call, the chat messages waiting in the
generation's steering list (``keys.steer_key``) are recorded as ``data-steer`` events in
the same append as the step's ``finish-step``, which drops exactly those from the list:
the next call's user turn carries them after the tool results, and a takeover folds them
from the stream the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core import tracing
from broadcaster.generations import waiting
from worker.continuation import LOST_RUN, continuation_request, partial_turn, plan_cut, plan_restart
from worker.mapping import EventMapper
from worker.model_call import CallFailed, Policy, call_model
from worker.providers.base import Provider
from worker.sessions import GOES_ON
from worker.splice import Seam, SeamTrim
from worker.transcript import Reattach, Step, ToolCall, step_messages
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


@dataclass(frozen=True, slots=True)
class GoingOn:
    """The model call that continues a step cut off in its model call."""

    events: list[dict[str, Any]]
    """The step's events so far, with those that closed its cut parts."""
    turn: list[dict[str, Any]]
    """The partial assistant turn the model is sent (empty: nothing was shown)."""
    open_text: str | None
    partial_text: str


@dataclass
class Progress:
    """How far the attempt is: its steps so far, and what the stream holds."""

    steps: list[Step]
    stream_steps: int
    """``start-step`` events in the whole stream."""
    started: bool
    """The attempt's ``start`` is in the stream."""
    usage: dict[str, int] | None = None
    """Summed over the model calls so far (None before the first one reported any)."""
    model: str | None = None
    id_prefix: str = ""
    """Before the ids of this attempt's text and reasoning parts: set when it goes on from
    a cut step, so that no new part reuses the id of a part the cut call left (the AI SDK
    would append to it, or, with ``WorkflowChatTransport``'s framing repair, drop the new
    start)."""
    attempt: int = 1
    by_attempt: dict[str, int] = field(default_factory=dict)
    """Output tokens reported by the model calls of each attempt (a call cut off with its
    worker never reported its own: the provider billed them all the same)."""
    going_on: GoingOn | None = None
    """Set when the attempt's first model call continues a cut step."""
    restarts: bool = False
    """Set when the attempt's first model call makes a restarted step's call again (its
    ``start-step`` says so: ``worker.continuation.RESTARTED_STEP``)."""
    cut: bool = False
    """The attempt began in a step cut off in its model call."""
    taken_over: bool = False
    """This attempt took the generation over from a worker that was lost (not a decision's
    resume): the first tool call with no output may have been running when it was."""
    reattach: Reattach | None = None
    """The last step's model call goes on where a lost worker left it (``worker.reattach``)."""

    def add_usage(self, mapper: EventMapper) -> None:
        if not mapper.started:
            return
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        self.usage = {k: usage[k] + mapper.usage.get(k, 0) for k in usage}
        self.model = mapper.model or self.model
        key = str(self.attempt)
        self.by_attempt[key] = self.by_attempt.get(key, 0) + mapper.usage.get("output_tokens", 0)

    def usage_meta(self) -> dict[str, str]:
        if self.usage is None:
            return {}
        return {"usage": json.dumps(self.usage), "usage_attempts": json.dumps(self.by_attempt)}


async def go_on(writer: StreamWriter, progress: Progress, cut: Step, mode: str) -> None:
    """A step was cut off in its model call: close its cut parts with a ``data-continued``
    notice, and set where the attempt goes on (``worker.continuation``). ``mode`` is the
    worker's ``WORKER_TAKEOVER``: ``restart`` makes every cut step's call again in a new
    step (for comparison: it shows and bills the cut output twice)."""
    plan = plan_cut(cut.events)
    if mode == "restart" and plan.mode == "continue":
        plan = plan_restart(cut.events)
    reason = "the worker running this generation was lost"
    shown = [plan.notice(progress.attempt, reason), *plan.closing]
    progress.id_prefix = f"a{progress.attempt}-"
    if plan.mode == "tools":
        # Its calls were whole: the step's output is, as far as it goes.
        cut.events += shown
        progress.steps.append(cut)
        await writer.flush(shown, meta={"steps_done": str(progress.stream_steps)})
        return
    if plan.mode == "restart":
        progress.restarts = True
        # The stored text is the answer's: without what the restarted step showed.
        kept = [e for s in progress.steps for e in s.events if e.get("type") == "text-delta"]
        await writer.flush(shown, text_reset="".join(str(e.get("delta")) for e in kept))
    else:
        await writer.flush(shown)
    if plan.mode == "continue":
        turn = partial_turn(cut.events, plan.dropped)
        events = [*cut.events, *shown]
        progress.going_on = GoingOn(events, turn, plan.open_text, plan.partial_text)
    log.info(
        "generation %s: cut step goes on (%s) in attempt %d",
        writer.stream_id,
        plan.mode,
        progress.attempt,
    )


async def run_steps(run: StepRun, progress: Progress) -> None:
    """Run steps to the generation's terminal event (``finish`` or ``error``)."""
    open_step = progress.steps[-1] if progress.steps else None
    # Taken over after a step's model output was whole: run only what is missing.
    resumed_reason = GOES_ON if run.session else "tool-calls"
    if (
        open_step
        and not open_step.finished
        and await _after_model(run, progress, open_step, resumed_reason, resumed=True)
    ):
        return
    while True:
        going_on, progress.going_on = progress.going_on, None
        restarts, progress.restarts = progress.restarts, False
        request = step_messages(run.request, progress.steps)
        if going_on is not None:
            request = continuation_request(request, going_on.turn)
        reattach, progress.reattach = progress.reattach, None
        if reattach is not None:
            request = reattach.request(request)
        try:
            step, mapper = await call_model(
                run.provider,
                request,
                run.writer,
                run.policy,
                message_id=run.message_id,
                started=progress.started,
                id_prefix=progress.id_prefix,
                seam=None if going_on is None else _seam(going_on),
                restarts=restarts,
            )
        except CallFailed as exc:
            progress.add_usage(exc.mapper)
            log.warning("generation %s failed: %s", run.writer.stream_id, exc.error.message)
            meta = {"error": exc.error.message, **progress.usage_meta()}
            await run.writer.flush([_error(exc.error.message)], meta=meta)
            return
        if reattach is not None:
            step.events[:0] = reattach.shown
        progress.started = True
        if going_on is None:
            progress.stream_steps += 1
        else:
            step.events = [*going_on.events, *step.events]
        progress.add_usage(mapper)
        progress.steps.append(step)
        reason = GOES_ON if mapper.stop_reason == GOES_ON else mapper.finish_reason
        if await _after_model(run, progress, step, reason):
            return


def _seam(going_on: GoingOn) -> Callable[[], Seam]:
    return lambda: Seam(going_on.open_text, SeamTrim(going_on.partial_text))


async def _after_model(
    run: StepRun, progress: Progress, step: Step, reason: str, *, resumed: bool = False
) -> bool:
    """The step's model output is whole: end the generation, or run the worker's tools it
    called and end the step (``resumed``: a takeover found it so, ``steps_done`` said).
    True when the generation has ended, or waits for a person."""
    calls = step.calls()
    tools = run.policy.tools
    goes_on = reason == GOES_ON  # an agent's next step follows (``worker.sessions``)
    if not goes_on and (reason != "tool-calls" or not any(tools.runs(c.name) for c in calls)):
        await _finish(run, progress, reason)
        return True
    if not resumed:
        await _mark_whole(run, progress)
    if await _run_tools(run, step, lost_run=resumed and progress.taken_over):
        return True  # suspended: the decision queues the generation again
    if any(not tools.runs(c.name) for c in calls):
        await _finish(run, progress, "tool-calls")  # the client runs the rest
        return True
    if len(progress.steps) >= run.max_steps:
        log.info("generation %s: max_steps (%d) reached", run.writer.stream_id, run.max_steps)
        await _finish(run, progress, "other" if goes_on else "tool-calls")
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


async def _mark_whole(run: StepRun, progress: Progress) -> None:
    """Append the step's last model events with ``steps_done``: its output is whole."""
    if not run.writer.pending:
        # The call holds its last block's events back for this append; without them a
        # takeover would see the output as cut off and make the call again.
        log.warning("generation %s: no event to carry steps_done", run.writer.stream_id)
    marker = {"steps_done": str(progress.stream_steps), "steps_model": progress.model or ""}
    await run.writer.flush(meta={**marker, **progress.usage_meta()})


async def _run_tools(run: StepRun, step: Step, *, lost_run: bool = False) -> bool:
    """Run the step's calls of the worker's tools whose output is not in the stream yet,
    one after the other, each output appended as soon as it is known; a call that needs
    approval runs once approved, is denied once denied, and without a decision suspends
    the generation after the others. True when it suspended. ``lost_run``: a lost worker
    may have been running the first call with no output (tools run in order): it runs
    again only if its tool is idempotent, else it ends as interrupted."""
    tools, metrics = run.policy.tools, run.writer.metrics
    done = step.outputs()
    decisions = step.decisions()
    undecided: list[ToolCall] = []
    for call in step.calls():
        if not tools.runs(call.name) or call.id in done:
            continue
        if lost_run and not tools.deferred(call.name) and _interrupted(step, call, decisions):
            lost_run = False
            if not tools.idempotent(call.name):
                output = {"type": "tool-output-error", "toolCallId": call.id, "errorText": LOST_RUN}
                step.events.append(output)
                await run.writer.flush([output])
                continue
        if tools.needs_approval(call.name, call.input):
            decision = decisions.get(call.id)
            if decision is None:
                undecided.append(call)
                continue
            if not decision.get("approved"):
                denied = {"type": "tool-output-denied", "toolCallId": call.id}
                step.events.append(denied)
                await run.writer.flush([denied])
                if metrics is not None:
                    metrics.tool_calls.labels(call.name, "denied").inc()
                continue
        if tools.deferred(call.name):
            continue  # approved: the agent runs it itself at its next step
        with tracing.span(f"execute_tool {call.name}", _tool_attributes(call)) as span:
            output = await tools.call(call.id, call.name, call.input)
            if output["type"] == "tool-output-error":
                span.set_attribute("error.type", "tool_error")
        if metrics is not None:
            outcome = "error" if output["type"] == "tool-output-error" else "output"
            metrics.tool_calls.labels(call.name, outcome).inc()
        step.events.append(output)
        await run.writer.flush([output])
    if undecided:
        await _suspend(run, step, undecided)
        return True
    return False


def _interrupted(step: Step, call: ToolCall, decisions: dict[str, dict[str, Any]]) -> bool:
    """Whether the lost worker may have started this call: not one still waiting for a
    person's decision, nor one it was denied."""
    if call.id in step.requested():
        decision = decisions.get(call.id)
        return decision is not None and bool(decision.get("approved"))
    return True


def _tool_attributes(call: ToolCall) -> dict[str, Any]:
    """A tool run's span attributes (OpenTelemetry GenAI semantic conventions)."""
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id,
        "gen_ai.tool.type": "function",
    }


async def _suspend(run: StepRun, step: Step, calls: list[ToolCall]) -> None:
    """Ask a person about ``calls`` and leave the generation waiting, in one append."""
    tools = run.policy.tools
    asked = step.requested()
    wait_s = min(tools.approval_timeout(c.name) for c in calls)
    asks = [waiting.Ask(c.id, c.name, c.input, asked.get(c.id)) for c in calls]
    await run.writer.flush()  # anything pending first: the requests' seqs are then known
    held = waiting.suspension(run.writer.stream_id, asks, wait_s, run.writer.seq)
    step.events += held.requests
    await run.writer.flush(held.requests, meta=held.meta, extras=held.extras)
    log.info(
        "generation %s: waiting up to %.0fs for a decision on %s",
        run.writer.stream_id,
        wait_s,
        ", ".join(c.name for c in calls),
    )


async def _finish(run: StepRun, progress: Progress, reason: str) -> None:
    usage = progress.usage or {"input_tokens": 0, "output_tokens": 0}
    metadata: dict[str, Any] = {
        "model": progress.model,
        "usage": {"inputTokens": usage["input_tokens"], "outputTokens": usage["output_tokens"]},
    }
    if progress.attempt > 1:
        # Taken over: what each attempt's model calls reported (a call cut off with its
        # worker reported nothing, though its tokens were billed).
        metadata["outputTokensByAttempt"] = dict(progress.by_attempt)
    finish = {"type": "finish", "finishReason": reason, "messageMetadata": metadata}
    await run.writer.flush([{"type": "finish-step"}, finish], meta=progress.usage_meta())


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "errorText": text}


__all__ = ["Progress", "StepRun", "run_steps"]
