"""An agent that speaks AG-UI, offline: pydantic-ai's AG-UI adapter over a ``FunctionModel``
(no provider, no network), as the AG-UI-in tests drive it.

The model's first turn says a few words and calls ``weather``; the tool runs in the agent;
its second turn answers with the result. ``sse`` is what pydantic-ai's AG-UI endpoint
would answer (``data:`` frames); ``events`` the ``ag-ui-protocol`` models themselves.
Both import pydantic-ai and ``ag-ui-protocol`` when called, not when this module is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ag_ui.core import BaseEvent
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models.function import AgentInfo, DeltaToolCalls
    from pydantic_ai.ui.ag_ui import AGUIAdapter

FIRST = ["Let me ", "look. "]
SECOND = ["It is ", "21 ", "degrees."]
ANSWER = "".join(FIRST + SECOND)


async def _model(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    from pydantic_ai.models.function import DeltaToolCall

    if any(getattr(p, "part_kind", "") == "tool-return" for p in messages[-1].parts):
        for words in SECOND:
            yield words
        return
    for words in FIRST:
        yield words
    yield {0: DeltaToolCall(name="weather", json_args='{"city":', tool_call_id="call_w1")}
    yield {0: DeltaToolCall(json_args=' "Paris"}')}


def _agent() -> Agent[None, str]:
    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    agent = Agent(FunctionModel(stream_function=_model))

    @agent.tool_plain
    def weather(city: str) -> dict[str, Any]:
        return {"city": city, "temp": 21}

    return agent


def _adapter() -> AGUIAdapter[None, str]:
    from ag_ui.core import RunAgentInput, UserMessage
    from pydantic_ai.ui.ag_ui import AGUIAdapter

    run = RunAgentInput(
        thread_id="t1",
        run_id="r1",
        state={},
        messages=[UserMessage(id="u1", role="user", content="Weather in Paris?")],
        tools=[],
        context=[],
        forwarded_props={},
    )
    return AGUIAdapter(agent=_agent(), run_input=run)


async def events() -> AsyncIterator[BaseEvent]:
    async for event in _adapter().run_stream():
        yield event


async def sse() -> list[str]:
    adapter = _adapter()
    return [frame async for frame in adapter.encode_stream(adapter.run_stream())]
