"""A pydantic-ai ``Agent`` served as it is (the ``pydantic-ai`` extra; imported only
when ``WORKER_AGENTS`` names one).

The agent runs with ``Agent.iter``, node by node: each model request one step (steering
joins it as a user prompt), each tool it ran a provider-executed tool part, its usage
pydantic-ai's own count. A tool that ``requires_approval`` ends the run with
``DeferredToolRequests``, which become ``tool-approval-request``s; the next run passes
the decisions as ``DeferredToolResults``. Every run starts from the log (``history``);
thinking is not sent back, and a step cut off mid-answer is made again. docs/agents.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    RetryPromptPart,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.usage import RunUsage

from worker.agents.chunks import shown_steps
from worker.agents.job import AgentFn, AgentJob, Asked, Chunk
from worker.usage import Usage


def serve(agent: Agent[Any, Any]) -> AgentFn:
    """The agent function that runs ``agent`` for a job."""

    async def run(job: AgentJob) -> AsyncIterator[Chunk]:
        async for chunk in _run(agent, job):
            yield chunk

    run.__name__ = f"pydantic_ai:{agent.name or 'agent'}"
    return run


async def _run(agent: Agent[Any, Any], job: AgentJob) -> AsyncIterator[Chunk]:
    prompt, history, decided = starting_point(job)
    shown = {str(e.get("toolCallId")) for s in job.steps for e in s if "toolCallId" in e}
    output_type = [agent.output_type, DeferredToolRequests]
    running: Any = agent.iter(
        prompt, message_history=history, deferred_tool_results=decided, output_type=output_type
    )
    async with running as run:
        node = run.next_node
        while not Agent.is_end_node(node):
            if Agent.is_model_request_node(node):
                yield {"type": "start-step"}
                steering = job.steering()
                if steering:
                    told = UserPromptPart("\n\n".join(steering))
                    node.request.parts = [*node.request.parts, told]
                streamed: Any = node.stream(run.ctx)
                async with streamed as answer:
                    async for event in answer:
                        for chunk in _model_chunks(event):
                            yield chunk
                job.usage = usage_of(run.usage)
            elif Agent.is_call_tools_node(node):
                calls: dict[str, ToolCallPart] = {}
                async with node.stream(run.ctx) as ran:
                    async for done in ran:
                        for chunk in _tool_chunks(done, calls, shown):
                            yield chunk
            node = await run.next(node)
        output = run.result.output if run.result is not None else None
    if isinstance(output, DeferredToolRequests):
        asked = [Asked(c.tool_call_id, c.tool_name, c.args_as_dict()) for c in output.approvals]
        job.approvals(asked)  # raises ApprovalPending: the generation waits


def usage_of(counted: RunUsage) -> Usage:
    """pydantic-ai's count of the run (``AgentRun.usage``): its ``input_tokens`` hold
    the cache's reads and writes, its ``output_tokens`` the reasoning, as here."""
    return Usage(
        input=counted.input_tokens,
        output=counted.output_tokens,
        cache_read=counted.cache_read_tokens,
        cache_write=counted.cache_write_tokens,
        reasoning=counted.output_reasoning_tokens,
    )


def _model_chunks(event: Any) -> list[Chunk]:
    """A model request's streamed text and thinking; its tool calls are shown once run."""
    if isinstance(event, PartStartEvent):
        part_id = f"p{event.index}"
        if isinstance(event.part, TextPart):
            return [
                {"type": "text-start", "id": part_id},
                *_delta("text", part_id, event.part.content),
            ]
        if isinstance(event.part, ThinkingPart):
            start = {"type": "reasoning-start", "id": part_id}
            return [start, *_delta("reasoning", part_id, event.part.content)]
    if isinstance(event, PartDeltaEvent):
        part_id = f"p{event.index}"
        if isinstance(event.delta, TextPartDelta):
            return _delta("text", part_id, event.delta.content_delta)
        if isinstance(event.delta, ThinkingPartDelta):
            return _delta("reasoning", part_id, event.delta.content_delta or "")
    if isinstance(event, PartEndEvent):
        if isinstance(event.part, TextPart):
            return [{"type": "text-end", "id": f"p{event.index}"}]
        if isinstance(event.part, ThinkingPart):
            return [{"type": "reasoning-end", "id": f"p{event.index}"}]
    return []


def _delta(kind: str, part_id: str, text: str) -> list[Chunk]:
    return [{"type": f"{kind}-delta", "id": part_id, "delta": text}] if text else []


def _tool_chunks(event: Any, calls: dict[str, ToolCallPart], shown: set[str]) -> list[Chunk]:
    """A tool the agent ran: its call (unless an earlier run showed it: a call that
    waited for a decision) and its output, once it has run."""
    if isinstance(event, FunctionToolCallEvent):
        calls[event.part.tool_call_id] = event.part
        return []
    if not isinstance(event, FunctionToolResultEvent):
        return []
    result = event.part
    call = calls.get(result.tool_call_id)
    if call is None:
        return []
    told: list[Chunk] = []
    if call.tool_call_id not in shown:
        told.append(
            {
                "type": "tool-input-available",
                "toolCallId": call.tool_call_id,
                "toolName": call.tool_name,
                "input": call.args_as_dict(),
                "providerExecuted": True,
            }
        )
    if result.outcome == "success":
        output = {"type": "tool-output-available", "output": _json(result.content)}
    else:
        output = {"type": "tool-output-error", "errorText": str(result.content)}
    return [*told, {**output, "toolCallId": call.tool_call_id, "providerExecuted": True}]


def _json(value: Any) -> Any:
    """A tool's return as JSON (a string for anything JSON cannot say)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


# ---- the log as pydantic-ai messages


def starting_point(
    job: AgentJob,
) -> tuple[str | None, list[ModelMessage], DeferredToolResults | None]:
    """The run's prompt, message history and decided approvals: a new answer's prompt
    is the last user turn; an answer that showed steps goes on after them."""
    conversation = conversation_messages(job.messages)
    if not job.steps:
        if conversation and isinstance(conversation[-1], ModelRequest):
            last = conversation.pop()
            texts = [p.content for p in last.parts if isinstance(p, UserPromptPart)]
            if texts and all(isinstance(t, str) for t in texts):
                return "\n\n".join(str(t) for t in texts), conversation, None
            conversation.append(last)
        return None, conversation, None
    steps, pending = step_messages(job.steps)
    decisions = job.decisions
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {}
    for call_id in pending:
        decision = decisions.get(call_id)
        if decision is not None:
            denied = ToolDenied(decision.reason or "The user denied this tool call.")
            approvals[call_id] = True if decision.approved else denied
    decided = DeferredToolResults(approvals=approvals) if approvals else None
    return None, [*conversation, *steps], decided


def conversation_messages(messages: list[dict[str, Any]]) -> list[ModelMessage]:
    """The request's conversation (Anthropic's message shape) as pydantic-ai messages."""
    names: dict[str, str] = {}
    found: list[ModelMessage] = []
    for message in messages:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if message.get("role") == "assistant":
            parts: list[ModelResponsePart] = []
            for b in blocks:
                if b.get("type") == "text" and b.get("text"):
                    parts.append(TextPart(str(b["text"])))
                elif b.get("type") == "tool_use":
                    names[str(b.get("id"))] = str(b.get("name"))
                    parts.append(ToolCallPart(str(b.get("name")), b.get("input"), str(b.get("id"))))
            found.append(ModelResponse(parts=parts))
            continue
        asks: list[ModelRequestPart] = []
        for b in blocks:
            if b.get("type") == "text" and b.get("text"):
                asks.append(UserPromptPart(str(b["text"])))
            elif b.get("type") == "tool_result":
                call_id = str(b.get("tool_use_id"))
                asks.append(ToolReturnPart(names.get(call_id, "tool"), b.get("content"), call_id))
        found.append(ModelRequest(parts=asks))
    return found


def step_messages(steps: list[list[Chunk]]) -> tuple[list[ModelMessage], list[str]]:
    """The steps shown so far as messages: each a model response, then a request with
    the returns of the tools that ran and any steering; and the calls still without an
    output (waiting for a decision, or decided and not yet run)."""
    shown, outputs = shown_steps(steps)
    found: list[ModelMessage] = []
    pending: list[str] = []
    for step in shown:
        calls = {i: ToolCallPart(name, args, i) for i, (name, args) in step.calls.items()}
        parts: list[ModelResponsePart] = [TextPart(t) for t in step.texts]
        if not parts and not calls:
            continue  # a step whose calls' outputs only came (a decision's resume)
        found.append(ModelResponse(parts=[*parts, *calls.values()]))
        returns: list[ModelRequestPart] = []
        for call_id, call in calls.items():
            output = outputs.get(call_id)
            if output is None or output.get("type") == "tool-output-denied":
                pending.append(call_id)
            elif output.get("type") == "tool-output-error":
                returns.append(
                    RetryPromptPart(
                        str(output.get("errorText")), tool_name=call.tool_name, tool_call_id=call_id
                    )
                )
            else:
                returns.append(ToolReturnPart(call.tool_name, output.get("output"), call_id))
        returns += [UserPromptPart(t) for t in step.steering]
        if returns:
            found.append(ModelRequest(parts=returns))
    return found, pending


__all__ = ["conversation_messages", "serve", "starting_point", "step_messages"]
