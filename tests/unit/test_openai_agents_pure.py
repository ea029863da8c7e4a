"""The OpenAI Agents SDK adapter's pure parts (worker/agents/openai_agents.py): the SDK's
stream events as UI message chunks, the log as the SDK's input items, and the spec
that serves an SDK ``Agent`` without importing the SDK for anything else; and, against
the local fake OpenAI server, that closing the adapter's iterator closes the model call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.fake_openai import FakeOpenAIServer, delay, reply
from tests.support.procs import ROOT
from worker.agents.chunks import StepChunks
from worker.agents.job import AgentJob
from worker.agents.spec import load_agents
from worker.providers.parts import PartStart

if TYPE_CHECKING:
    from agents import Agent, RawResponsesStreamEvent, RunItemStreamEvent
    from openai.types.responses import ResponseFunctionToolCall

pytestmark = pytest.mark.unit


def _uvicorn_as_it_was() -> None:
    """Importing the SDK imports sse-starlette (through ``mcp``), which puts its own
    ``Server.handle_exit`` on uvicorn's ``Server``: harmless in a worker, which runs no
    uvicorn, but the uvicorn servers this test process may run (the webhook receivers of
    tests/support/webhooks.py) keep uvicorn's own."""
    from sse_starlette.sse import AppStatus
    from uvicorn.server import Server

    original: Any = AppStatus.original_handler
    if original is not None:
        Server.handle_exit = original  # type: ignore[method-assign]


@pytest.fixture(scope="module", autouse=True)
def _sdk() -> None:
    """The SDK, imported when this module's tests run (collecting them imports none of it
    nor of the adapter), uvicorn put back at once, tracing off."""
    from agents import set_tracing_disabled

    _uvicorn_as_it_was()
    set_tracing_disabled(True)


@pytest.fixture(scope="module")
def unit_agent() -> Agent[Any]:
    from agents import Agent

    return Agent(name="unit")


def _made(event: Any, **fields: Any) -> Any:
    """An SDK stream event with only the fields the adapter reads."""
    return event.model_construct(**fields)


def _raw(data: Any) -> RawResponsesStreamEvent:
    from agents import RawResponsesStreamEvent

    return RawResponsesStreamEvent(data=data)


def _text(delta: str, index: int) -> RawResponsesStreamEvent:
    from openai.types.responses import ResponseTextDeltaEvent

    return _raw(_made(ResponseTextDeltaEvent, delta=delta, output_index=index))


def _call(call_id: str, name: str, arguments: str) -> ResponseFunctionToolCall:
    from openai.types.responses import ResponseFunctionToolCall

    return ResponseFunctionToolCall(
        type="function_call", call_id=call_id, name=name, arguments=arguments
    )


def _ran(
    agent: Agent[Any], call_id: str, name: str, arguments: str, output: Any
) -> list[RunItemStreamEvent]:
    from agents import RunItemStreamEvent
    from agents.items import ToolCallItem, ToolCallOutputItem

    called = ToolCallItem(agent=agent, raw_item=_call(call_id, name, arguments))
    raw = {"type": "function_call_output", "call_id": call_id, "output": str(output)}
    done = ToolCallOutputItem(agent=agent, raw_item=raw, output=output)
    return [
        RunItemStreamEvent(name="tool_called", item=called),
        RunItemStreamEvent(name="tool_output", item=done),
    ]


def test_each_model_turn_is_a_step_its_text_and_reasoning_streamed() -> None:
    from openai.types.responses import (
        ResponseCompletedEvent,
        ResponseCreatedEvent,
        ResponseOutputItemDoneEvent,
        ResponseReasoningSummaryTextDeltaEvent,
    )

    from worker.agents.openai_agents import StreamChunks

    chunks = StreamChunks()
    events: list[Any] = [
        _raw(_made(ResponseCreatedEvent, type="response.created")),
        _raw(_made(ResponseReasoningSummaryTextDeltaEvent, delta="hm", output_index=0)),
        _text("Hel", 1),
        _text("lo", 1),
        _raw(_made(ResponseOutputItemDoneEvent, output_index=0)),
        _raw(_made(ResponseCompletedEvent, type="response.completed")),
        _raw(_made(ResponseCreatedEvent, type="response.created")),
        _text("again", 0),
    ]
    out = [c for e in events for c in chunks.feed(e)] + chunks.close()
    assert out == [
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r1-0"},
        {"type": "reasoning-delta", "id": "r1-0", "delta": "hm"},
        {"type": "text-start", "id": "t1-1"},
        {"type": "text-delta", "id": "t1-1", "delta": "Hel"},
        {"type": "text-delta", "id": "t1-1", "delta": "lo"},
        {"type": "reasoning-end", "id": "r1-0"},
        {"type": "text-end", "id": "t1-1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t2-0"},
        {"type": "text-delta", "id": "t2-0", "delta": "again"},
        {"type": "text-end", "id": "t2-0"},
    ]
    step = StepChunks(client_tools=frozenset())  # the worker takes each of them
    read = [e for c in out for e in step.feed(c)]
    assert sum(isinstance(e, PartStart) for e in read) == 3


def test_a_tool_is_shown_once_it_has_run_and_a_decided_call_is_not_shown_again(
    unit_agent: Agent[Any],
) -> None:
    from agents import RunItemStreamEvent
    from agents.items import ToolCallOutputItem

    from worker.agents.openai_agents import DENIED, StreamChunks

    chunks = StreamChunks(shown={"c-approved", "c-denied"}, answered={"c-denied"})
    ran = _ran(unit_agent, "c1", "weather", '{"city": "Paris"}', "sunny")
    out = [c for e in ran for c in chunks.feed(e)]
    assert out == [
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "weather",
            "input": {"city": "Paris"},
            "providerExecuted": True,
        },
        {
            "type": "tool-output-available",
            "toolCallId": "c1",
            "output": "sunny",
            "providerExecuted": True,
        },
    ]
    approved = ToolCallOutputItem(
        agent=unit_agent,
        raw_item={"type": "function_call_output", "call_id": "c-approved", "output": "gone"},
        output={"deleted": True},
    )
    assert chunks.feed(RunItemStreamEvent(name="tool_output", item=approved)) == [
        {
            "type": "tool-output-available",
            "toolCallId": "c-approved",
            "output": {"deleted": True},
            "providerExecuted": True,
        }
    ]
    denied = ToolCallOutputItem(
        agent=unit_agent,
        raw_item={"type": "function_call_output", "call_id": "c-denied", "output": DENIED},
        output=DENIED,
    )
    assert chunks.feed(RunItemStreamEvent(name="tool_output", item=denied)) == []


def test_the_conversation_becomes_input_items_tool_results_first() -> None:
    from worker.agents.openai_agents import conversation_items

    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "looking"},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and?"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "rain"},
            ],
        },
    ]
    assert conversation_items(messages) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "looking"},
        {
            "type": "function_call",
            "call_id": "t1",
            "name": "weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "t1", "output": "rain"},
        {"role": "user", "content": "and?"},
    ]


def _tool(call_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool-input-available",
        "toolCallId": call_id,
        "toolName": name,
        "input": tool_input,
    }


def test_a_run_after_a_decision_goes_on_from_the_waiting_calls() -> None:
    from worker.agents.openai_agents import starting_point, step_items

    first: list[dict[str, Any]] = [
        {"type": "text-delta", "id": "t", "delta": "Sure."},
        _tool("cw", "weather", {"city": "Rome"}),
        {"type": "tool-output-available", "toolCallId": "cw", "output": "sunny"},
        _tool("cd", "delete", {"path": "/x"}),
        {"type": "tool-approval-request", "approvalId": "a", "toolCallId": "cd"},
    ]
    items, pending = step_items([first])
    assert items == [
        {"role": "assistant", "content": "Sure."},
        {
            "type": "function_call",
            "call_id": "cw",
            "name": "weather",
            "arguments": '{"city": "Rome"}',
        },
        {"type": "function_call_output", "call_id": "cw", "output": "sunny"},
    ]
    assert [(c.call_id, c.name, c.arguments) for c in pending] == [
        ("cd", "delete", '{"path": "/x"}')
    ]
    job = AgentJob(
        "g",
        "a",
        {"prompt": "delete /x"},
        events=[{"type": "start"}, {"type": "start-step"}, *first],
    )
    start = starting_point(job)
    assert start.items[0] == {"role": "user", "content": "delete /x"} and start.items[1:] == items
    assert start.shown == {"cw", "cd"} and start.answered == {"cw"}


def test_a_denied_call_the_model_went_on_after_is_told_as_denied() -> None:
    from worker.agents.openai_agents import DENIED, step_items

    first: list[dict[str, Any]] = [
        _tool("cd", "delete", {"path": "/x"}),
        {"type": "tool-output-denied", "toolCallId": "cd"},
    ]
    steered = {"type": "data-steer", "data": {"text": "be brief"}}
    second: list[dict[str, Any]] = [
        {"type": "text-delta", "id": "t", "delta": "Not deleted."},
        steered,
    ]
    items, pending = step_items([first, second])
    assert pending == []
    told = step_items([first, second], {"cd": "not that one"})[0][1]
    assert told == {"type": "function_call_output", "call_id": "cd", "output": "not that one"}
    assert items == [
        {"type": "function_call", "call_id": "cd", "name": "delete", "arguments": '{"path": "/x"}'},
        {"type": "function_call_output", "call_id": "cd", "output": DENIED},
        {"role": "assistant", "content": "Not deleted."},
        {"role": "user", "content": "be brief"},
    ]


def test_the_spec_serves_an_sdk_agent_and_imports_the_sdk_for_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_FAKE_URL", "http://127.0.0.1:9/v1")
    found = load_agents("helper=tests.support.openai_agents:assistant")
    assert found["helper"].__name__ == "openai_agents:assistant"
    code = (
        "import sys\n"
        "from worker.agents.spec import as_agent, load_agents\n"
        "async def mine(job):\n    yield {'type': 'start-step'}\n"
        "assert as_agent('mine', mine) is mine\n"
        "assert 'agents' not in sys.modules and 'worker.agents.openai_agents' not in sys.modules\n"
    )
    done = subprocess.run(  # a fresh interpreter: this one has imported the SDK
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_closing_the_agents_iterator_closes_its_model_call() -> None:
    """The worker's stop closes the agent's iterator where it waits (``aclose`` at a
    ``yield``, or a cancel): the adapter cancels the run, and the model's stream closes."""
    from agents import Agent, OpenAIChatCompletionsModel
    from openai import AsyncOpenAI

    from worker.agents.openai_agents import serve

    with FakeOpenAIServer() as srv:
        slow = reply(text=["word "] * 40)
        srv.enqueue([slow[0]] + [s for step in slow[1:41] for s in (step, delay(0.1))] + slow[41:])
        client = AsyncOpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
        agent: Agent[Any] = Agent(name="slow", model=OpenAIChatCompletionsModel("m", client))

        async def read_three_words_and_close() -> int:
            answer = serve(agent)(AgentJob("g", "slow", {"prompt": "talk"}))
            words = 0
            async for chunk in answer:
                words += chunk["type"] == "text-delta"
                if words == 3:
                    break
            await answer.aclose()  # type: ignore[attr-defined]
            # while this loop still runs (its end would close every connection anyway)
            closed = await asyncio.to_thread(srv.wait_client_closed, 0, 10)
            assert closed, "the model request was not closed"
            return words

        assert asyncio.run(read_three_words_and_close()) == 3
        assert not srv.exchanges[0].completed and srv.request_count == 1
