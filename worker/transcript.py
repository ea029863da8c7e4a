"""A generation's steps, folded from its events: what the next model call is sent, and
where a worker that takes a generation over resumes. Pure: no I/O.

A step is one model call and the tools the worker ran for it, between ``start-step`` and
``finish-step``. The events are the durable record: the next step's messages are rebuilt
from the stream alone, by the worker that wrote it or one that takes it over. What the
events cannot say (whether the last step's model output was whole) the worker writes in
the same append as that output: ``steps_done`` in the stream's metadata
(``plan_resume``). A step cut off in its model call goes on per ``worker.continuation``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broadcaster.generations.content import fold

Event = dict[str, Any]

_OUTPUTS = ("tool-output-available", "tool-output-error", "tool-output-denied")

DENIED = "The user denied this tool call."
"""A denied call's result for the model, before the person's reason if they gave one."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    input: Any


@dataclass
class Step:
    """The events of one step, from its ``start-step`` (excluded) on."""

    events: list[Event] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return any(e.get("type") == "finish-step" for e in self.events)

    @property
    def restarted(self) -> bool:
        """A takeover found it cut off with nothing to go on from, closed it, and made
        its model call again in a new step (``worker.continuation``)."""
        return any(
            e.get("type") == "data-continued" and (e.get("data") or {}).get("mode") == "restart"
            for e in self.events
        )

    def calls(self) -> list[ToolCall]:
        """The tool calls the model made (not the ones its provider ran itself)."""
        return [
            ToolCall(str(e.get("toolCallId")), str(e.get("toolName")), e.get("input"))
            for e in self.events
            if e.get("type") == "tool-input-available" and not e.get("providerExecuted")
        ]

    def outputs(self) -> dict[str, Event]:
        """The output events of the tools run so far (a denial is one), by call id."""
        return {str(e.get("toolCallId")): e for e in self.events if e.get("type") in _OUTPUTS}

    def requested(self) -> dict[str, str]:
        """The calls that asked a person for a decision: call id -> approval id."""
        return {
            str(e.get("toolCallId")): str(e.get("approvalId"))
            for e in self.events
            if e.get("type") == "tool-approval-request"
        }

    def decisions(self) -> dict[str, dict[str, Any]]:
        """The decisions recorded in the stream (``data-approval``), by call id:
        ``{approvalId, toolCallId, approved, reason?}``."""
        found: dict[str, dict[str, Any]] = {}
        for e in self.events:
            data = e.get("data")
            if e.get("type") == "data-approval" and isinstance(data, dict):
                found.setdefault(str(data.get("toolCallId")), data)
        return found

    def steering(self) -> list[dict[str, Any]]:
        """The messages that steered the generation after this step (``data-steer``), as
        text blocks for the next call's user turn."""
        blocks = []
        for e in self.events:
            data = e.get("data")
            if e.get("type") == "data-steer" and isinstance(data, dict) and data.get("text"):
                blocks.append({"type": "text", "text": str(data["text"])})
        return blocks

    def turns(self) -> list[dict[str, Any]]:
        """The assistant turn and the user turn of tool results (then any steering
        messages), as Anthropic messages."""
        # The fold leaves out empty text blocks and makes input that is not a JSON object
        # {} (the tool was told): Anthropic refuses either sent back.
        content = fold(self.events)
        outputs = self.outputs()
        decisions = self.decisions()
        results = [tool_result(c.id, outputs.get(c.id), decisions.get(c.id)) for c in self.calls()]
        user = [*results, *self.steering()]
        return [{"role": "assistant", "content": content}, {"role": "user", "content": user}]


def tool_result(
    call_id: str, output: Event | None, decision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``tool_result`` block for a tool output event (a denial: the person's reason,
    as an error)."""
    if output is not None and output.get("type") == "tool-output-denied":
        reason = (decision or {}).get("reason")
        text = f"{DENIED} {reason}" if isinstance(reason, str) and reason else DENIED
        return {"type": "tool_result", "tool_use_id": call_id, "content": text, "is_error": True}
    if output is None or output.get("type") == "tool-output-error":
        text = "the tool did not run" if output is None else str(output.get("errorText"))
        return {"type": "tool_result", "tool_use_id": call_id, "content": text, "is_error": True}
    return {"type": "tool_result", "tool_use_id": call_id, "content": json.dumps(output["output"])}


def latest_attempt(events: Sequence[Event]) -> list[Event]:
    """The events of the latest attempt: from its ``start`` on (an attempt after a lost
    worker begins with ``data-retry`` and ``start``)."""
    starts = [i for i, e in enumerate(events) if e.get("type") == "start"]
    return list(events[starts[-1] :]) if starts else []


def split_steps(attempt: Sequence[Event]) -> list[Step]:
    """An attempt's events cut into steps at each ``start-step``; a step that a takeover
    restarted (its ``data-continued`` says ``restart``) is no step of the answer."""
    steps: list[Step] = []
    for event in attempt:
        if event.get("type") == "start-step":
            steps.append(Step())
        elif steps:
            steps[-1].events.append(event)
    return [s for s in steps if not s.restarted]


def ends_restarted(events: Sequence[Event]) -> bool:
    """The stream's last step is one a takeover restarted, and the call made again has not
    begun (its worker was lost in between): the next call's ``start-step`` says so."""
    for e in reversed(events):
        if e.get("type") == "start-step":
            return False
        if e.get("type") == "data-continued" and (e.get("data") or {}).get("mode") == "restart":
            return True
    return False


def step_messages(request: dict[str, Any], steps: Sequence[Step]) -> dict[str, Any]:
    """The request for the model call after ``steps``: the request's messages (its prompt
    as a user turn) followed by each step's assistant turn and tool results."""
    if not steps:
        return request
    base = request.get("messages") or [{"role": "user", "content": request["prompt"]}]
    turns = [turn for step in steps for turn in step.turns()]
    rest = {k: v for k, v in request.items() if k != "prompt"}
    return {**rest, "messages": [*base, *turns]}


@dataclass
class Resume:
    """Where a new attempt starts, from what an earlier one left in the stream."""

    steps: list[Step]
    """The steps it keeps: each finished, but the last may be open (its model output is
    whole, some of its tools' outputs are missing)."""
    cut: Step | None
    """The step the earlier attempt was cut off in, in the middle of its model call (its
    events so far); ``worker.continuation.plan_cut`` says how it goes on."""
    stream_steps: int
    """``start-step`` events in the stream."""
    started: bool
    """The generation's ``start`` is in the stream."""


def plan_resume(events: Sequence[Event], steps_done: int) -> Resume:
    """Where to resume a generation whose stream holds ``events`` and whose metadata says
    ``steps_done``: after the last finished step, or in the last step if its model output
    was whole (only its missing tool outputs are run); else in the step cut off in its
    model call (``Resume.cut``), which goes on from what it showed."""
    stream_steps = sum(1 for e in events if e.get("type") == "start-step")
    attempt = latest_attempt(events)
    steps = split_steps(attempt)
    started = bool(attempt)
    if steps and (steps[-1].finished or steps_done == stream_steps):
        return Resume(steps, None, stream_steps, started)
    if not steps:
        return Resume([], None, stream_steps, started)  # nothing of a step shown yet
    return Resume(steps[:-1], steps[-1], stream_steps, started)


__all__ = [
    "Resume",
    "Step",
    "ToolCall",
    "ends_restarted",
    "latest_attempt",
    "plan_resume",
    "split_steps",
    "step_messages",
    "tool_result",
]
