"""Local servers' quirks as events (vLLM's reasoning and streamed tool calls, Ollama's
whole tool call in one chunk, no key and max_tokens), and both providers giving the
same events for the same shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.core.events import Usage
from tests.support import fake_openai as oai
from tests.support import provider_fixtures
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    message,
    text,
    thinking,
    tool_use,
)
from tests.support.provider_fixtures import kinds, run, worker_env
from tests.support.stacks import Stack, start_stack, status

pytestmark = pytest.mark.anyio

# The deployment's fixtures, found by pytest under these names (each one's own
# fixtures included).
_worker_log_is_clean = provider_fixtures._worker_log_is_clean
anth = provider_fixtures.anth
base_dir = provider_fixtures.base_dir
fakes = provider_fixtures.fakes
oai_srv = provider_fixtures.oai_srv
stack = provider_fixtures.stack

# --- the servers' quirks as events -----------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_vllm_reasoning_and_a_streamed_tool_call(
    oai_srv: oai.FakeOpenAIServer, stack: Stack, field: str
) -> None:
    oai_srv.enqueue(
        oai.reply(
            reasoning=["Hmm, ", "cities."],
            reasoning_field=field,
            text=["Hé", "llo"],
            tools=[oai.streamed_call("call_v1", "get_weather", ['{"ci', 'ty": "Rome"}'])],
            prompt_tokens=21,
            completion_tokens=9,
        )
    )
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(
            client, stack.url, prompt="weather", provider="openai", model="qwen3"
        )
        st = await status(client, stack.url, gid)
    assert kinds(events) == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    assert events[10].json() == {
        "type": "tool-input-start",
        "toolCallId": "call_v1",
        "toolName": "get_weather",
    }
    assert events[13].json()["input"] == {"city": "Rome"}
    assert events[-1].json() == {
        "type": "finish",
        "finishReason": "tool-calls",
        "messageMetadata": {"model": "qwen3", "usage": Usage(21, 9, reasoning=2).ai_sdk()},
    }
    assert st["text"] == "Héllo"
    assert st["usage"] == Usage(21, 9, reasoning=2).snake()


async def test_ollama_whole_tool_call_in_one_chunk(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue(
        oai.reply(
            reasoning=["ok"],
            reasoning_field="reasoning",
            tools=[oai.whole_call("call_o1", "get_weather", {"city": "Lima"})],
        )
    )
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(
            client, stack.url, prompt="weather", provider="openai", model="llama3.2"
        )
    tool = [e.json() for e in events if e.event and e.event.startswith("tool-input")]
    assert tool == [
        {"type": "tool-input-start", "toolCallId": "call_o1", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_o1", "inputTextDelta": '{"city": "Lima"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_o1",
            "toolName": "get_weather",
            "input": {"city": "Lima"},
        },
    ]
    assert events[-1].json()["finishReason"] == "tool-calls"


SHAPES = {
    # name: (the reasoning field, the tool call as the server streams it)
    "openai": ("reasoning_content", False),
    "vllm": ("reasoning", False),
    "ollama": ("reasoning", True),
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_both_providers_give_the_same_events(
    anth: FakeAnthropicServer, oai_srv: oai.FakeOpenAIServer, stack: Stack, shape: str
) -> None:
    """The same answer (thinking, text, a tool call) from Anthropic and from an
    OpenAI-compatible server is the same events and the same ``content``, but for the
    signature only Anthropic gives."""
    field, whole = SHAPES[shape]
    fragments = ['{"city": "Rome"}'] if whole else ['{"ci', 'ty": "Rome"}']
    anth.enqueue(
        message(
            [
                thinking(["Hmm, ", "cities."], signature="sig-same"),
                text(["Hé", "llo"]),
                tool_use("call_same", "get_weather", fragments),
            ],
            input_tokens=21,
            output_tokens=9,
            stop_reason="tool_use",
        )
    )
    call = (
        oai.whole_call("call_same", "get_weather", {"city": "Rome"})
        if whole
        else oai.streamed_call("call_same", "get_weather", fragments)
    )
    oai_srv.enqueue(
        oai.reply(
            reasoning=["Hmm, ", "cities."],
            reasoning_field=field,
            text=["Hé", "llo"],
            tools=[call],
            prompt_tokens=21,
            completion_tokens=9,
            reasoning_tokens=0,  # as Anthropic's, which counts no reasoning apart
        )
    )
    seen: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for provider in ("anthropic", "openai"):
            gid, events = await run(
                client, stack.url, prompt="weather", provider=provider, model="m-1"
            )
            datas = [e.json() for e in events]
            assert datas[0] == {"type": "start", "messageId": gid}
            seen[provider] = (datas[1:], (await status(client, stack.url, gid))["content"])
    signature = {
        "type": "reasoning-delta",
        "id": "r0",
        "delta": "",
        "providerMetadata": {"anthropic": {"signature": "sig-same"}},
    }
    anthropic_events, anthropic_content = seen["anthropic"]
    assert signature in anthropic_events
    assert [e for e in anthropic_events if e != signature] == seen["openai"][0]
    assert anthropic_content[0].pop("signature") == "sig-same"
    assert seen["openai"][1][0].pop("signature") == ""
    assert anthropic_content == seen["openai"][1]
    assert seen["openai"][0][-1] == {
        "type": "finish",
        "finishReason": "tool-calls",
        "messageMetadata": {"model": "m-1", "usage": Usage(21, 9).ai_sdk()},
    }


async def test_a_local_server_without_a_key_and_with_max_tokens(
    anth: FakeAnthropicServer, base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ollama's settings: no ``OPENAI_API_KEY`` (the SDK still sends one, any will do) and
    ``max_tokens`` for the limit, the only name Ollama knows."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with oai.FakeOpenAIServer() as local:
        local.enqueue(oai.reply(text=["hi"]))
        env = worker_env(anth.base_url, local.base_url, WORKER_PROVIDERS="openai")
        del env["OPENAI_API_KEY"]
        own = start_stack(
            base_dir,
            "ollama",
            {**env, "WORKER_OPENAI_MAX_TOKENS_PARAM": "max_tokens"},
            metrics=True,
        )
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                _, events = await run(
                    client, own.url, prompt="hi", provider="openai", model="llama3.2", max_tokens=77
                )
            assert events[-1].event == "finish", events[-1].data
        finally:
            own.stop()
        headers, sent = local.requests[0]
    assert local.errors == []
    assert headers["authorization"] == "Bearer unused"
    assert sent["max_tokens"] == 77
    assert "max_completion_tokens" not in sent
