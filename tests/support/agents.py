"""The agents the agent tests serve (``WORKER_AGENTS``), offline: a plain async callable
(``echo``), a pydantic-ai ``Agent`` on a ``FunctionModel`` (``helper``) and a LangGraph
graph on langchain-core's fake chat model (``graph``). What they
do that a test must see from outside (a tool run, a model stream closed) is recorded,
one JSON line each, in the file ``AGENT_MARKS`` names.

``echo`` answers in words with a pause between them (``metadata``: ``words``, ``delay``,
``steps``), says which steering messages reached each step, runs a tool of its own
(``lookup``) when the prompt says "tool", and asks a person before its ``wipe`` when the
prompt says "approve". ``helper``'s model calls ``weather`` (runs at once) when the
prompt says "weather", and ``delete`` (needs approval) when it says "delete"; "slow"
makes it answer in 60 words a tenth of a second apart.

``helper`` and ``graph`` are built when first read (``__getattr__``): the tests that
import this module for ``WORDS`` and ``marks`` import neither pydantic-ai nor LangGraph.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from worker.agents.job import AgentJob, Chunk

if TYPE_CHECKING:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models.function import AgentInfo

GRAPH_USAGE: dict[str, Any] = {
    "input_tokens": 25,
    "output_tokens": 9,
    "total_tokens": 34,
    "input_token_details": {"cache_read": 20, "cache_creation": 3},
    "output_token_details": {"reasoning": 4},
}
"""The usage ``graph``'s model call reports (LangChain's ``usage_metadata``)."""

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def mark(what: str, **data: Any) -> None:
    path = os.environ.get("AGENT_MARKS")
    if path:
        with Path(path).open("a") as out:
            out.write(json.dumps({"what": what, **data}) + "\n")


def marks(path: Path, what: str) -> list[dict[str, Any]]:
    """The marks of one kind recorded so far."""
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [m for m in found if m["what"] == what]


def _text(part_id: str, words: list[str]) -> list[Chunk]:
    deltas = [{"type": "text-delta", "id": part_id, "delta": f"{w} "} for w in words]
    return [{"type": "text-start", "id": part_id}, *deltas, {"type": "text-end", "id": part_id}]


async def echo(job: AgentJob) -> AsyncIterator[Chunk]:
    """An agent written by hand: see the module's doc."""
    delay = float(job.metadata.get("delay", 0.01))
    words = int(job.metadata.get("words", 6))
    steps = int(job.metadata.get("steps", 1))
    decision = job.decisions.get("call-wipe")
    try:
        if decision is not None:  # called again once a person decided
            yield {"type": "start-step"}
            if decision.approved:
                mark("wipe", generation=job.id)
                output = {"wiped": True}
                yield {"type": "tool-output-available", "toolCallId": "call-wipe", "output": output}
            for chunk in _text("after", ["approved" if decision.approved else "denied"]):
                yield chunk
            return
        for n in range(len(job.steps), steps):  # a takeover goes on after the steps shown
            yield {"type": "start-step"}
            steered = job.steering()
            yield {"type": "text-start", "id": f"s{n}"}
            for w in [WORDS[i % len(WORDS)] for i in range(words)]:
                yield {"type": "text-delta", "id": f"s{n}", "delta": f"{w} "}
                await asyncio.sleep(delay)
            if steered:
                yield {
                    "type": "text-delta",
                    "id": f"s{n}",
                    "delta": f"[steered: {'; '.join(steered)}]",
                }
            yield {"type": "text-end", "id": f"s{n}"}
            if "tool" in job.prompt:
                call = {"toolCallId": f"call-lookup-{n}", "toolName": "lookup"}
                yield {"type": "tool-input-available", **call, "input": {"q": job.prompt}}
                mark("lookup", generation=job.id)
                found = {"found": len(job.prompt)}
                yield {
                    "type": "tool-output-available",
                    "toolCallId": call["toolCallId"],
                    "output": found,
                }
        if "approve" in job.prompt:
            job.approval("call-wipe", "wipe", {"path": "/tmp/x"})
    except asyncio.CancelledError:
        mark("echo cancelled", generation=job.id)
        raise


def _prompt(messages: list[ModelMessage]) -> str:
    """The latest user prompt (a chat's earlier turns come first)."""
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in reversed(message.parts):
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


async def _model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[Any]:
    """``helper``'s model: see the module's doc."""
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaToolCall

    prompt = _prompt(messages)
    last = messages[-1]
    returned = [p for p in last.parts if isinstance(p, ToolReturnPart)]
    if returned:
        yield f"The tool said: {returned[0].content}"
        return
    slow = "slow" in prompt
    try:
        for i in range(60 if slow else 5):
            yield f"{WORDS[i % len(WORDS)]} "
            await asyncio.sleep(0.1 if slow else 0.005)
    except (asyncio.CancelledError, GeneratorExit):
        mark("model stream closed", prompt=prompt)
        raise
    if "weather" in prompt:
        yield {
            1: DeltaToolCall(
                name="weather", json_args='{"city": "Paris"}', tool_call_id="call-weather"
            )
        }
    if "delete" in prompt:
        yield {
            2: DeltaToolCall(
                name="delete", json_args='{"path": "/tmp/x"}', tool_call_id="call-delete"
            )
        }


def _helper() -> Agent[None, str]:
    """A pydantic-ai ``Agent`` on a ``FunctionModel`` (``_model``) with two tools."""
    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    helper = Agent(FunctionModel(stream_function=_model), name="helper")

    @helper.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        mark("weather", city=city)
        return f"sunny in {city}"

    @helper.tool_plain(requires_approval=True)
    def delete(path: str) -> str:
        """Delete a file (asks a person first)."""
        mark("delete", path=path)
        return f"deleted {path}"

    return helper


def _graph() -> Any:
    """A LangGraph graph: a fake chat model's answer, then an interrupt that asks a person
    before its ``delete`` (its checkpoints in memory: resumed by the same worker)."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages
    from langgraph.types import interrupt

    # The functional form: LangGraph reads the state's annotations, which this module's
    # ``from __future__ import annotations`` would leave as names of this function's locals.
    State = TypedDict(  # noqa: UP013
        "State", {"messages": Annotated[list[BaseMessage], add_messages]}
    )
    chat_model = GenericFakeChatModel(
        messages=itertools.repeat(AIMessage(content="I will delete the file if you agree"))
    )

    async def think(state: State) -> dict[str, Any]:
        said = await chat_model.ainvoke(state["messages"])
        # The fake model counts nothing: this answer says what a real model's would.
        counted = AIMessage(content=said.content, id=said.id, usage_metadata=GRAPH_USAGE)
        return {"messages": [counted]}

    def gate(state: State) -> dict[str, Any]:
        decision = interrupt({"tool": "delete", "input": {"path": "/tmp/graph"}})
        if decision.get("approved"):
            mark("graph delete")
        said = "Deleted it." if decision.get("approved") else "Left it alone."
        return {"messages": [AIMessage(content=said)]}

    built = StateGraph(State)
    built.add_node("think", think)
    built.add_node("gate", gate)
    built.add_edge(START, "think")
    built.add_edge("think", "gate")
    built.add_edge("gate", END)
    return built.compile(checkpointer=InMemorySaver())


_BUILDERS = {"helper": _helper, "graph": _graph}


def __getattr__(name: str) -> Any:
    """``helper`` or ``graph``, built the first time it is read (see the module's doc)."""
    build = _BUILDERS.get(name)
    if build is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = build()
    return value
