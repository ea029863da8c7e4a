"""The steps of one attempt: a model call, the worker's tools it called, and the next step
with their results, until the model stops, a tool the worker does not have is called, or
``max_steps`` is reached.

One ``start`` and one ``finish`` per generation; each step between ``start-step`` and
``finish-step``. When the model calls tools the worker runs, the step's model output is
appended together with ``steps_done`` in the stream's metadata (``worker.steps``), then
each tool's output as soon as it has run, each in its own append: a worker that takes the
generation over finds every tool that has run in the stream and runs only the others.
Tools run one after the other, in the order the model called them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from worker.mapping import EventMapper
from worker.model_call import CallFailed, Policy, call_model
from worker.providers.base import Provider
from worker.steps import Step, step_messages
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

    def add_usage(self, mapper: EventMapper) -> None:
        if not mapper.started:
            return
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        self.usage = {k: usage[k] + mapper.usage.get(k, 0) for k in usage}
        self.model = mapper.model or self.model

    def usage_meta(self) -> dict[str, str]:
        return {} if self.usage is None else {"usage": json.dumps(self.usage)}


async def run_steps(run: StepRun, progress: Progress) -> None:
    """Run steps to the generation's terminal event (``finish`` or ``error``)."""
    open_step = progress.steps[-1] if progress.steps else None
    # Taken over after a step's model output was whole: run only what is missing.
    if (
        open_step
        and not open_step.finished
        and await _after_model(run, progress, open_step, "tool-calls", resumed=True)
    ):
        return
    while True:
        request = step_messages(run.request, progress.steps)
        try:
            step, mapper = await call_model(
                run.provider,
                request,
                run.writer,
                run.policy,
                message_id=run.message_id,
                started=progress.started,
            )
        except CallFailed as exc:
            progress.add_usage(exc.mapper)
            log.warning("generation %s failed: %s", run.writer.stream_id, exc.error.message)
            meta = {"error": exc.error.message, **progress.usage_meta()}
            await run.writer.flush([_error(exc.error.message)], meta=meta)
            return
        progress.started = True
        progress.stream_steps += 1
        progress.add_usage(mapper)
        progress.steps.append(step)
        if await _after_model(run, progress, step, mapper.finish_reason):
            return


async def _after_model(
    run: StepRun, progress: Progress, step: Step, reason: str, *, resumed: bool = False
) -> bool:
    """The step's model output is whole: end the generation, or run the worker's tools it
    called and end the step (``resumed``: a takeover found it so, ``steps_done`` said).
    True when the generation has ended."""
    calls = step.calls()
    tools = run.policy.tools
    if reason != "tool-calls" or not any(tools.runs(c.name) for c in calls):
        await _finish(run, progress, reason)
        return True
    if not resumed:
        await _mark_whole(run, progress)
    await _run_tools(run, step)
    if any(not tools.runs(c.name) for c in calls):
        await _finish(run, progress, "tool-calls")  # the client runs the rest
        return True
    if len(progress.steps) >= run.max_steps:
        log.info("generation %s: max_steps (%d) reached", run.writer.stream_id, run.max_steps)
        await _finish(run, progress, "tool-calls")
        return True
    step.events.append({"type": "finish-step"})
    await run.writer.flush([{"type": "finish-step"}])
    return False


async def _mark_whole(run: StepRun, progress: Progress) -> None:
    """Append the step's last model events with ``steps_done``: its output is whole."""
    if not run.writer.pending:
        # The call holds its last block's events back for this append; without them a
        # takeover would see the output as cut off and make the call again.
        log.warning("generation %s: no event to carry steps_done", run.writer.stream_id)
    marker = {"steps_done": str(progress.stream_steps), "steps_model": progress.model or ""}
    await run.writer.flush(meta={**marker, **progress.usage_meta()})


async def _run_tools(run: StepRun, step: Step) -> None:
    """Run the step's calls of the worker's tools whose output is not in the stream yet,
    one after the other, each output appended as soon as it is known."""
    tools, metrics = run.policy.tools, run.writer.metrics
    done = step.outputs()
    for call in step.calls():
        if not tools.runs(call.name) or call.id in done:
            continue
        output = await tools.call(call.id, call.name, call.input)
        if metrics is not None:
            outcome = "error" if output["type"] == "tool-output-error" else "output"
            metrics.tool_calls.labels(call.name, outcome).inc()
        step.events.append(output)
        await run.writer.flush([output])


async def _finish(run: StepRun, progress: Progress, reason: str) -> None:
    usage = progress.usage or {"input_tokens": 0, "output_tokens": 0}
    finish = {
        "type": "finish",
        "finishReason": reason,
        "messageMetadata": {
            "model": progress.model,
            "usage": {"inputTokens": usage["input_tokens"], "outputTokens": usage["output_tokens"]},
        },
    }
    await run.writer.flush([{"type": "finish-step"}, finish], meta=progress.usage_meta())


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "errorText": text}


__all__ = ["Progress", "StepRun", "run_steps"]
