"""The worker's tools a step called, run between its model call and the next: each call
whose output is not in the stream yet, in the order the model called them, each output
appended as soon as it is known (so a takeover runs only the others).

A call of a tool that needs approval runs only once a person has decided. Without a
decision, the step's other tools run, then one append adds a ``tool-approval-request``
per undecided call and suspends the generation (``waiting``, a wait token as its owner,
the waiting set, the ``approval.requested`` webhook), and the attempt ends holding
nothing. The decision queues the job again. ARCHITECTURE.md, "Waiting for a person".
"""

from __future__ import annotations

import logging
from typing import Any

from broadcaster.core import tracing
from broadcaster.generations import waiting
from worker.continuation import LOST_RUN
from worker.tools import ToolBox
from worker.transcript import Step, ToolCall
from worker.writer import StreamWriter

log = logging.getLogger("worker.generation")


async def run_tools(
    writer: StreamWriter, tools: ToolBox, step: Step, *, lost_run: bool = False
) -> bool:
    """Run the step's calls of the worker's tools whose output is not in the stream yet;
    a call that needs approval runs once approved, is denied once denied, and without a
    decision suspends the generation after the others. True when it suspended.
    ``lost_run``: a lost worker may have been running the first call with no output: it
    runs again only if its tool is idempotent, else it ends as interrupted."""
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
                await _shown(writer, step, output)
                continue
        if tools.needs_approval(call.name, call.input):
            decision = decisions.get(call.id)
            if decision is None:
                undecided.append(call)
                continue
            if not decision.get("approved"):
                await _shown(writer, step, {"type": "tool-output-denied", "toolCallId": call.id})
                _count(writer, call, "denied")
                continue
        if tools.deferred(call.name):
            continue  # approved: the agent runs it itself at its next step
        await _shown(writer, step, await _run(tools, call, writer))
    if undecided:
        await _suspend(writer, tools, step, undecided)
        return True
    return False


async def _run(tools: ToolBox, call: ToolCall, writer: StreamWriter) -> dict[str, Any]:
    with tracing.span(f"execute_tool {call.name}", _tool_attributes(call)) as span:
        output = await tools.call(call.id, call.name, call.input)
        if output["type"] == "tool-output-error":
            span.set_attribute("error.type", "tool_error")
    _count(writer, call, "error" if output["type"] == "tool-output-error" else "output")
    return output


async def _shown(writer: StreamWriter, step: Step, output: dict[str, Any]) -> None:
    step.events.append(output)
    await writer.flush([output])


def _count(writer: StreamWriter, call: ToolCall, outcome: str) -> None:
    if writer.metrics is not None:
        writer.metrics.tool_calls.labels(call.name, outcome).inc()


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


async def _suspend(writer: StreamWriter, tools: ToolBox, step: Step, calls: list[ToolCall]) -> None:
    """Ask a person about ``calls`` and leave the generation waiting, in one append."""
    asked = step.requested()
    wait_s = min(tools.approval_timeout(c.name) for c in calls)
    asks = [waiting.Ask(c.id, c.name, c.input, asked.get(c.id)) for c in calls]
    await writer.flush()  # anything pending first: the requests' seqs are then known
    held = waiting.suspension(writer.stream_id, asks, wait_s, writer.seq)
    step.events += held.requests
    await writer.flush(held.requests, meta=held.meta, extras=held.extras)
    log.info(
        "generation %s: waiting up to %.0fs for a decision on %s",
        writer.stream_id,
        wait_s,
        ", ".join(c.name for c in calls),
    )


__all__ = ["run_tools"]
