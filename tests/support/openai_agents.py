"""The OpenAI Agents SDK agent the agent tests serve (``WORKER_AGENTS``), offline: an
``Agent`` on the SDK's Chat Completions model, its client pointed at the local fake
OpenAI server whose address ``OPENAI_AGENTS_FAKE_URL`` names
(tests/support/fake_openai.py; the test plays the model's answers there). Tracing is
off, so nothing is exported.

``assistant`` has two tools: ``weather`` runs at once; ``delete`` needs a person's
approval (``needs_approval``). Each run of either is recorded, one JSON line in the file
``AGENT_MARKS`` names (``tests.support.agents.mark``).
"""

from __future__ import annotations

import os

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.support.agents import mark

set_tracing_disabled(True)

MODEL = "gpt-fake"
INSTRUCTIONS = "You help with the weather and with files."


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    mark("oa weather", city=city)
    return f"sunny in {city}"


@function_tool(needs_approval=True)
def delete(path: str) -> str:
    """Delete a file (a person approves it first)."""
    mark("oa delete", path=path)
    return f"deleted {path}"


def _client() -> AsyncOpenAI:
    url = os.environ.get("OPENAI_AGENTS_FAKE_URL")
    if not url:
        raise RuntimeError(
            "OPENAI_AGENTS_FAKE_URL is not set: the fake OpenAI server's URL "
            "(tests/integration/test_agents_openai.py starts one)"
        )
    return AsyncOpenAI(base_url=url, api_key="test", max_retries=0)


assistant = Agent(
    name="assistant",
    instructions=INSTRUCTIONS,
    model=OpenAIChatCompletionsModel(MODEL, _client()),
    tools=[weather, delete],
)
