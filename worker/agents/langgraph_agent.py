"""A LangGraph compiled graph served as it is (the ``langgraph`` extra; imported only
when ``WORKER_AGENTS`` names one).

The graph's state holds ``messages``; it runs with ``astream`` (``messages`` and
``updates``), its thread the generation's id: each AI message a step, each tool call
with its ``ToolMessage`` a provider-executed tool part, the usage from
``usage_metadata``. An ``interrupt({"tool", "input"})`` is an approval request, resumed
with ``Command(resume={interrupt id: {"approved", "reason"}})``. Resuming needs a
checkpointer that holds the thread (a shared one lets any worker resume); without a
checkpoint the graph runs again from the conversation. docs/agents.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.types import Command

from worker.agents.job import AgentFn, AgentJob, Asked, Chunk
from worker.usage import Usage

PREFIX = "interrupt-"
"""Before an interrupt's id: the tool call id its approval is asked under."""


def serve(graph: Any) -> AgentFn:
    """The agent function that runs the compiled ``graph`` for a job."""

    async def run(job: AgentJob) -> AsyncIterator[Chunk]:
        async for chunk in _run(graph, job):
            yield chunk

    return run


async def _start(graph: Any, job: AgentJob, config: dict[str, Any]) -> Any:
    """What the run is given: the conversation for a new answer (or a thread no
    checkpoint holds); the decisions, for a graph waiting on its interrupts; else
    nothing (it goes on from its last checkpoint)."""
    fresh = {"messages": conversation(job.messages)}
    if not job.steps:
        return fresh
    state = await graph.aget_state(config)
    if not state.values:
        return fresh
    decisions = job.decisions
    resume = {}
    for pending in state.interrupts:
        decision = decisions.get(PREFIX + pending.id)
        if decision is not None:
            resume[pending.id] = {"approved": decision.approved, "reason": decision.reason}
    return Command(resume=resume) if resume else None


async def _run(graph: Any, job: AgentJob) -> AsyncIterator[Chunk]:
    job.usage = Usage()  # LangChain counts: a message that says no usage used none
    config = {"configurable": {"thread_id": job.id}}
    start = await _start(graph, job, config)
    current: str | None = None
    asked: list[Asked] = []
    async for mode, chunk in graph.astream(start, config, stream_mode=["messages", "updates"]):
        if mode == "messages":
            message = chunk[0]
            if not isinstance(message, AIMessage) or not isinstance(message.content, str):
                continue
            if not message.content:
                continue
            if message.id != current:
                if current is not None:
                    yield {"type": "text-end", "id": current}
                current = str(message.id)
                yield {"type": "start-step"}
                yield {"type": "text-start", "id": current}
            yield {"type": "text-delta", "id": current, "delta": message.content}
        elif "__interrupt__" in chunk:
            for pending in chunk["__interrupt__"]:
                value = pending.value if isinstance(pending.value, dict) else {}
                name = str(value.get("tool") or "interrupt")
                asked.append(Asked(PREFIX + pending.id, name, value.get("input", value)))
        else:
            for update in chunk.values():
                for message in (
                    (update or {}).get("messages", []) if isinstance(update, dict) else []
                ):
                    job.usage = counted(job.usage, message)
                    for tool_chunk in _tool_chunks(message):
                        yield tool_chunk
    if current is not None:
        yield {"type": "text-end", "id": current}
    if asked:
        job.approvals(asked)  # raises ApprovalPending: the generation waits


def counted(so_far: Usage | None, message: Any) -> Usage | None:
    """The run's usage with an AI message's own (LangChain's ``usage_metadata``: its
    ``input_tokens`` hold the cache's reads and writes, its ``output_tokens`` the
    reasoning, as here) added; a message that says none adds nothing."""
    said = getattr(message, "usage_metadata", None) if isinstance(message, AIMessage) else None
    if not said:
        return so_far
    inputs = said.get("input_token_details") or {}
    outputs = said.get("output_token_details") or {}
    used = Usage(
        input=int(said.get("input_tokens") or 0),
        output=int(said.get("output_tokens") or 0),
        cache_read=int(inputs.get("cache_read") or 0),
        cache_write=int(inputs.get("cache_creation") or 0),
        reasoning=int(outputs.get("reasoning") or 0),
    )
    return (so_far or Usage()) + used


def _tool_chunks(message: Any) -> list[Chunk]:
    """A node's update: the tool calls an AI message made, the output a tool message
    brought."""
    if isinstance(message, ToolMessage):
        output = {"type": "tool-output-available", "output": message.content}
        if message.status == "error":
            output = {"type": "tool-output-error", "errorText": str(message.content)}
        return [{**output, "toolCallId": message.tool_call_id, "providerExecuted": True}]
    if isinstance(message, AIMessage):
        return [
            {
                "type": "tool-input-available",
                "toolCallId": str(call["id"]),
                "toolName": call["name"],
                "input": call["args"],
                "providerExecuted": True,
            }
            for call in message.tool_calls
        ]
    return []


def conversation(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """The request's conversation (Anthropic's message shape) as LangChain messages:
    their text (tool blocks of earlier turns are left out)."""
    found: list[BaseMessage] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(
                str(b.get("text"))
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
        if not content:
            continue
        role = AIMessage if message.get("role") == "assistant" else HumanMessage
        found.append(role(content=str(content)))
    return found


__all__ = ["conversation", "serve"]
