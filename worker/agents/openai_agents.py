"""An OpenAI Agents SDK ``Agent`` served as it is (the ``openai-agents`` extra; imported
only when ``WORKER_AGENTS`` names one).

The agent runs with ``Runner.run_streamed``, its events mapped as they come
(``StreamChunks``): each model turn a step, each tool it ran a provider-executed tool
part. A tool with ``needs_approval`` interrupts the run; since the SDK's ``RunState``
lives in the process that ran it, the next run rebuilds it from the log by replaying the
turns with recorded answers (``_Replay``, no model called) and then applies the
decisions. Every run starts from the log (``starting_point``). docs/agents.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from agents import (
    Agent,
    Model,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RawResponsesStreamEvent,
    RunConfig,
    RunItemStreamEvent,
    Runner,
    RunState,
    ToolApprovalItem,
    TResponseInputItem,
    Usage,
)
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseTextDeltaEvent,
)

from worker.agents.chunks import TOOL_OUTPUTS, shown_steps
from worker.agents.job import AgentFn, AgentJob, Asked, Chunk, Decision
from worker.usage import Usage as UsageCounts

DENIED = "The user denied this tool call."
"""What the model is told of a denied call when the person gave no reason."""


def serve(agent: Agent[Any]) -> AgentFn:
    """The agent function that runs ``agent`` for a job."""

    async def run(job: AgentJob) -> AsyncIterator[Chunk]:
        async with aclosing(_run(agent, job)) as chunks:  # closed with this one, at once
            async for chunk in chunks:
                yield chunk

    run.__name__ = f"openai_agents:{agent.name or 'agent'}"
    return run


async def _run(agent: Agent[Any], job: AgentJob) -> AsyncGenerator[Chunk, None]:
    start = starting_point(job)
    if start.pending:
        state = await _decided(agent, start, job.approvals)
        result = Runner.run_streamed(agent, state)
    else:
        result = Runner.run_streamed(agent, input=start.items)
    # Part ids go on from the steps shown, so a run after a decision makes no id again.
    chunks = StreamChunks(shown=start.shown, answered=start.answered, turn=len(job.steps))
    try:
        async for event in result.stream_events():
            for chunk in chunks.feed(event):
                if chunk["type"] == "start-step":  # the turns before counted by now
                    job.usage = usage_of(result.context_wrapper.usage)
                yield chunk
    finally:
        result.cancel()  # a stop closes this generator: the run and its model call end here
    job.usage = usage_of(result.context_wrapper.usage)
    for chunk in chunks.close():
        yield chunk
    if result.interruptions:
        job.approvals([asked(i) for i in result.interruptions])  # raises ApprovalPending


def usage_of(counted: Usage) -> UsageCounts:
    """The SDK's count of the run (``context_wrapper.usage``, the Responses API's: its
    ``input_tokens`` hold the cached, its ``output_tokens`` the reasoning, as here)."""
    return UsageCounts(
        input=counted.input_tokens,
        output=counted.output_tokens,
        cache_read=counted.input_tokens_details.cached_tokens or 0,
        reasoning=counted.output_tokens_details.reasoning_tokens or 0,
    )


# ---- the SDK's stream events as UI message chunks


@dataclass
class StreamChunks:
    """The run's stream events as AI SDK UI message chunks, as they come."""

    shown: set[str] = field(default_factory=set)
    """Tool calls whose input the log shows already (a call that waited for a decision)."""
    answered: set[str] = field(default_factory=set)
    """Tool calls whose output the log has (a denied call: the worker wrote it)."""
    turn: int = 0
    calls: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """The calls made in this run, by id: their tool's name and input."""
    parts: dict[int, tuple[str, str]] = field(default_factory=dict)
    """The open text and reasoning parts, by output index: (kind, id)."""

    def feed(self, event: Any) -> list[Chunk]:
        if isinstance(event, RawResponsesStreamEvent):
            return self._raw(event.data)
        if isinstance(event, RunItemStreamEvent):
            if event.name == "tool_called":
                self._called(event.item.raw_item)
            elif event.name == "tool_output":
                return self._output(event.item.raw_item, getattr(event.item, "output", None))
        return []

    def _raw(self, data: Any) -> list[Chunk]:
        if isinstance(data, ResponseCreatedEvent):
            self.turn += 1
            return [*self.close(), {"type": "start-step"}]
        if isinstance(data, ResponseTextDeltaEvent):
            return self._delta("text", data.output_index, data.delta)
        if isinstance(
            data, ResponseReasoningSummaryTextDeltaEvent | ResponseReasoningTextDeltaEvent
        ):
            return self._delta("reasoning", data.output_index, data.delta)
        if isinstance(data, ResponseOutputItemDoneEvent):
            return self._end(data.output_index)
        if isinstance(data, ResponseCompletedEvent):
            return self.close()
        return []

    def _delta(self, kind: str, index: int, text: str) -> list[Chunk]:
        out: list[Chunk] = []
        if self.parts.get(index, (kind,))[0] != kind:
            out += self._end(index)
        if index not in self.parts:
            part_id = f"{kind[0]}{self.turn}-{index}"
            self.parts[index] = (kind, part_id)
            out.append({"type": f"{kind}-start", "id": part_id})
        if text:
            out.append({"type": f"{kind}-delta", "id": self.parts[index][1], "delta": text})
        return out

    def _end(self, index: int) -> list[Chunk]:
        open_part = self.parts.pop(index, None)
        return [] if open_part is None else [{"type": f"{open_part[0]}-end", "id": open_part[1]}]

    def close(self) -> list[Chunk]:
        """The parts left open, ended."""
        return [c for index in list(self.parts) for c in self._end(index)]

    def _called(self, raw: Any) -> None:
        if isinstance(raw, ResponseFunctionToolCall):
            self.calls[raw.call_id] = (raw.name, _arguments(raw.arguments))

    def _output(self, raw: Any, output: Any) -> list[Chunk]:
        call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
        if not isinstance(call_id, str) or call_id in self.answered:
            return []
        call = self.calls.get(call_id)
        told: list[Chunk] = []
        if call_id not in self.shown:
            if call is None:
                return []  # no function call of this run (a hosted tool's): nothing to show
            name, tool_input = call
            told.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": name,
                    "input": tool_input,
                    "providerExecuted": True,
                }
            )
        self.answered.add(call_id)
        done = {"type": "tool-output-available", "toolCallId": call_id, "output": _json(output)}
        return [*told, {**done, "providerExecuted": True}]


def _arguments(arguments: str) -> Any:
    """A call's arguments (JSON text) as its input; text that is no JSON object as is."""
    try:
        found = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return found if isinstance(found, dict) else {"arguments": found}


def _json(value: Any) -> Any:
    """A tool's output as JSON (a string for anything JSON cannot say)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def asked(item: ToolApprovalItem) -> Asked:
    """An interruption as this project's approval request."""
    raw = item.raw_item
    call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", "")
    tool_input = _arguments(arguments) if isinstance(arguments, str) else {}
    return Asked(str(call_id), str(item.name or "tool"), tool_input)


# ---- the interrupted run, rebuilt, and its decisions


class _Replay(Model):
    """A model that answers once with the calls of the interrupted turn, as they are in
    the log: the SDK then interrupts on them as it did, and nothing is sent to a model."""

    def __init__(self, calls: list[ResponseFunctionToolCall]) -> None:
        self.calls = calls
        self.answered = False

    async def get_response(  # noqa: PLR0917 (the SDK's signature)
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        if self.answered:
            raise RuntimeError(
                "the calls waiting for a decision no longer need one: the agent's tools changed"
            )
        self.answered = True
        return ModelResponse(output=list(self.calls), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the replay is run, not streamed")


async def _decided(agent: Agent[Any], start: Start, approvals: Any) -> RunState[Any, Any]:
    """The interrupted run's state, rebuilt, with the decisions in the log applied;
    ``approvals`` (``AgentJob.approvals``) raises ``ApprovalPending`` for a call that
    has none."""
    replay = _Replay(start.pending)
    config = RunConfig(model=replay, tracing_disabled=True)
    result = await Runner.run(agent, input=start.items, run_config=config)
    state = result.to_state()
    interrupted = {asked(i).call_id: i for i in result.interruptions}
    decided: dict[str, Decision] = approvals([asked(i) for i in result.interruptions])
    for call_id, item in interrupted.items():
        decision = decided[call_id]
        if decision.approved:
            state.approve(item)
        else:
            state.reject(item, rejection_message=decision.reason or DENIED)
    return state


# ---- the log as the SDK's input items


@dataclass
class Start:
    """Where a run starts: its input items, and the calls of the last turn that wait for
    (or got) a decision and have not run."""

    items: list[TResponseInputItem]
    pending: list[ResponseFunctionToolCall]
    shown: set[str]
    answered: set[str]


def starting_point(job: AgentJob) -> Start:
    """The run's input: the conversation, then the steps shown so far."""
    items = conversation_items(job.messages)
    reasons = {k: d.reason for k, d in job.decisions.items() if d.reason}
    steps, pending = step_items(job.steps, reasons)
    shown = {str(e.get("toolCallId")) for s in job.steps for e in s if "toolCallId" in e}
    answered = {
        str(e.get("toolCallId")) for s in job.steps for e in s if e.get("type") in TOOL_OUTPUTS
    }
    return Start([*items, *steps], pending, shown, answered)


def conversation_items(messages: list[dict[str, Any]]) -> list[TResponseInputItem]:
    """The request's conversation (Anthropic's message shape) as the SDK's input items."""
    found: list[TResponseInputItem] = []
    for message in messages:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        role: Literal["user", "assistant"] = (
            "assistant" if message.get("role") == "assistant" else "user"
        )
        outputs: list[TResponseInputItem] = []  # first: they answer the turn before
        said: list[TResponseInputItem] = []
        for b in blocks:
            if b.get("type") == "text" and b.get("text"):
                said.append(_said(role, str(b["text"])))
            elif b.get("type") == "tool_use":
                said.append(_call(str(b.get("id")), str(b.get("name")), b.get("input")))
            elif b.get("type") == "tool_result":
                outputs.append(_output(str(b.get("tool_use_id")), b.get("content")))
        found += [*outputs, *said]
    return found


def step_items(
    steps: list[list[Chunk]], reasons: dict[str, str] | None = None
) -> tuple[list[TResponseInputItem], list[ResponseFunctionToolCall]]:
    """The steps shown so far as input items: each its text, its tool calls and their
    outputs, then any steering; and the calls of the last turn still without an output
    (or denied: the model has not been told), which the run goes on from. ``reasons``:
    the denials' reasons, by call id, which is what the model was told of them."""
    denied = reasons or {}
    shown, outputs = shown_steps(steps)
    found: list[TResponseInputItem] = []
    pending: list[ResponseFunctionToolCall] = []
    for step in shown:
        calls = [
            ResponseFunctionToolCall(
                type="function_call", call_id=i, name=name, arguments=json.dumps(args or {})
            )
            for i, (name, args) in step.calls.items()
        ]
        if pending and (step.texts or calls):  # the model went on after them
            found += [_call(c.call_id, c.name, json.loads(c.arguments)) for c in pending]
            found += [_told(c, outputs.get(c.call_id), denied) for c in pending]
            pending = []
        found += [_said("assistant", t) for t in step.texts]
        ran = [c for c in calls if _ran(outputs.get(c.call_id))]
        pending += [c for c in calls if not _ran(outputs.get(c.call_id))]
        found += [_call(c.call_id, c.name, json.loads(c.arguments)) for c in ran]
        found += [_told(c, outputs[c.call_id], denied) for c in ran]
        found += [_said("user", t) for t in step.steering]
    return found, pending


def _ran(output: Chunk | None) -> bool:
    return output is not None and output.get("type") != "tool-output-denied"


def _told(
    call: ResponseFunctionToolCall, output: Chunk | None, reasons: dict[str, str]
) -> TResponseInputItem:
    """What the model was told of a call: its output, its error, or its denial."""
    if output is None:
        return _output(call.call_id, "The tool call was not run.")
    if output.get("type") == "tool-output-denied":
        return _output(call.call_id, reasons.get(call.call_id) or DENIED)
    if output.get("type") == "tool-output-error":
        return _output(call.call_id, str(output.get("errorText")))
    return _output(call.call_id, output.get("output"))


def _said(role: Literal["user", "assistant"], text: str) -> TResponseInputItem:
    return EasyInputMessageParam(role=role, content=text)


def _call(call_id: str, name: str, tool_input: Any) -> TResponseInputItem:
    arguments = json.dumps(tool_input if tool_input is not None else {})
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def _output(call_id: str, output: Any) -> TResponseInputItem:
    text = output if isinstance(output, str) else json.dumps(output)
    return {"type": "function_call_output", "call_id": call_id, "output": text}


__all__ = [
    "DENIED",
    "Start",
    "StreamChunks",
    "asked",
    "conversation_items",
    "serve",
    "starting_point",
    "step_items",
]
