"""Several providers in one deployment, end to end on real processes: a Redis server of the
module's own, a front-end and a worker with ``WORKER_PROVIDERS=anthropic,openai`` whose SDKs
point at the local fake Anthropic and fake OpenAI servers (``ANTHROPIC_BASE_URL``,
``OPENAI_BASE_URL``), scripted per test.

It shows that every field of a request reaches each model as sent or as translated; that
a two-turn conversation (thinking, a tool call, its result sent back with the ``content``
of ``GET /v1/generations/{id}``) passes the fakes' checks of signatures and tool ids; the
OpenAI-compatible servers' quirks (vLLM's ``reasoning_content`` and ``reasoning``,
Ollama's whole tool call) as the very events and ``content`` Anthropic's answer gives;
each error kind of either provider ending as the contract says (retried unseen before any
output, an ``error`` after it) and counted in the worker's
``worker_provider_errors_total``; a
request for a provider nobody serves refused with nothing queued; bad requests refused
with the field named and nothing queued; and a job left in the queue of the previous
version still run.

Scripts are queued on the fakes in the order the requests come: the tests of this module
run one at a time and each consumes exactly the scripts it queued.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import fake_openai as oai
from tests.support import provider_fixtures
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    cited_text,
    message,
    redacted_thinking,
    text,
    text_reply,
    thinking,
    tool_use,
)
from tests.support.procs import parse_sse
from tests.support.provider_fixtures import kinds, run
from tests.support.provider_requests import ANTHROPIC_HISTORY, FULL_REQUEST, PDF, PNG, WEATHER_TOOL
from tests.support.stacks import Stack, status

pytestmark = pytest.mark.anyio

# The deployment's fixtures, found by pytest under these names (each one's own
# fixtures included).
_worker_log_is_clean = provider_fixtures._worker_log_is_clean
anth = provider_fixtures.anth
base_dir = provider_fixtures.base_dir
fakes = provider_fixtures.fakes
oai_srv = provider_fixtures.oai_srv
stack = provider_fixtures.stack

# --- every field reaches the model -----------------------------------------------------------


async def test_every_field_reaches_anthropic_as_sent(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    anth.enqueue(text_reply(["ok"]))
    first = anth.request_count
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    # Anthropic takes no top_k and no forced tool while thinking: this one does not think.
    body = {
        **FULL_REQUEST,
        "messages": ANTHROPIC_HISTORY,
        "tools": [WEATHER_TOOL, server_tool],
        "thinking": {"type": "disabled"},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, **body)
        assert events[-1].event == "finish"
        st = await status(client, stack.url, gid)
    assert (st["provider"], st["model"]) == ("anthropic", "some-model")
    sent = anth.requests[first].body
    assert sent == {
        "model": "some-model",
        "max_tokens": 4000,
        "messages": body["messages"],
        "system": body["system"],
        "tools": body["tools"],
        "tool_choice": body["tool_choice"],
        "thinking": body["thinking"],
        "temperature": 1,
        "top_p": 0.95,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "user-42"},  # the client's own fields stay with it
        "service_tier": "standard_only",
        "stream": True,
    }


async def test_the_same_request_reaches_openai_translated(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue(oai.reply(text=["ok"]))
    first = oai_srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(
            client, stack.url, **{**FULL_REQUEST, "provider": "openai", "temperature": 1.5}
        )
        assert events[-1].event == "finish", events[-1].data
        st = await status(client, stack.url, gid)
    assert (st["provider"], st["model"]) == ("openai", "some-model")
    headers, sent = oai_srv.requests[first]
    assert headers["authorization"] == "Bearer test"
    assert sent == {
        "model": "some-model",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "report.pdf",
                            "file_data": f"data:application/pdf;base64,{PDF}",
                        },
                    },
                    {"type": "text", "text": "plain notes"},
                ],
            },
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 4000,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER_TOOL["input_schema"],
                    "description": "Weather of a city",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "temperature": 1.5,
        "top_p": 0.95,
        "top_k": 40,
        "stop": ["\n\nHuman:"],
        "user": "user-42",
        "service_tier": "default",
    }


OPENAI_CHOICES = [
    ({"tool_choice": {"type": "auto"}, "thinking": {"type": "disabled"}}, "auto", None),
    (
        {"tool_choice": {"type": "none"}, "thinking": {"type": "enabled", "budget_tokens": 5000}},
        "none",
        "medium",
    ),
    (
        {
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "thinking": {"type": "enabled", "budget_tokens": 20000},
        },
        {"type": "function", "function": {"name": "get_weather"}},
        "high",
    ),
    ({"thinking": {"type": "adaptive"}}, None, None),
]


@pytest.mark.parametrize(
    ("options", "tool_choice", "effort"),
    OPENAI_CHOICES,
    ids=["auto", "none-medium", "tool-high", "adaptive"],
)
async def test_tool_choice_and_thinking_reach_openai_translated(
    oai_srv: oai.FakeOpenAIServer,
    stack: Stack,
    options: dict[str, Any],
    tool_choice: Any,
    effort: str | None,
) -> None:
    oai_srv.enqueue(oai.reply(text=["ok"]))
    first = oai_srv.request_count
    body = {
        "provider": "openai",
        "system": "Be terse.",
        "prompt": "Weather?",
        "tools": [WEATHER_TOOL],
        "max_tokens": 30000,
        **options,
    }
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, **body)
    assert events[-1].event == "finish", events[-1].data
    sent = oai_srv.requests[first].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather?"},
    ]
    assert sent.get("tool_choice") == tool_choice
    assert sent.get("reasoning_effort") == effort
    assert "parallel_tool_calls" not in sent


async def test_parallel_tool_calls_and_their_results_reach_openai_translated(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    """Two calls in one assistant turn, answered by two results (one an error) and more
    text: two tool messages in order, then the user message, which the fake's check of
    tool call ids accepts."""
    oai_srv.enqueue(oai.reply(text=["Oslo is colder."]))
    first = oai_srv.request_count
    call = {"type": "tool_use", "name": "get_weather"}
    messages = [
        {"role": "user", "content": "Oslo or Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {**call, "id": "call_p1", "input": {"city": "Oslo"}},
                {**call, "id": "call_p2", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_p1", "content": "-3 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_p2",
                    "content": [{"type": "text", "text": "no data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Which is colder?"},
            ],
        },
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(
            client, stack.url, provider="openai", messages=messages, tools=[WEATHER_TOOL]
        )
        assert events[-1].event == "finish", events[-1].data
        assert (await status(client, stack.url, gid))["text"] == "Oslo is colder."

    def function(call_id: str, city: str) -> dict[str, Any]:
        arguments = json.dumps({"city": city})
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }

    assert oai_srv.requests[first].body["messages"] == [
        {"role": "user", "content": "Oslo or Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [function("call_p1", "Oslo"), function("call_p2", "Rome")],
        },
        {"role": "tool", "tool_call_id": "call_p1", "content": "-3 C"},
        {"role": "tool", "tool_call_id": "call_p2", "content": "no data"},
        {"role": "user", "content": "Which is colder?"},
    ]


# --- two turns: thinking, a tool call, its result --------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_turn_in_several_messages_is_one_turn(
    fakes: dict[str, FakeAnthropicServer], stack: Stack, provider: str
) -> None:
    """An assistant turn in two messages (a tool call, then text), its result in the next:
    accepted, and by each fake's check of tool ids (the Anthropic fake merges the turns as
    the API does; Chat Completions gets them merged)."""
    fake = fakes[provider]
    fake.enqueue(text_reply(["done"]) if provider == "anthropic" else oai.reply(text=["done"]))
    first = fake.request_count
    use = {
        "type": "tool_use",
        "id": "toolu_split",
        "name": "get_weather",
        "input": {"city": "Nice"},
    }
    messages = [
        {"role": "user", "content": "Weather in Nice?"},
        {"role": "assistant", "content": [use]},
        {"role": "assistant", "content": "Looking it up."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_split"}]},
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(
            client, stack.url, provider=provider, messages=messages, tools=[WEATHER_TOOL]
        )
        assert events[-1].event == "finish", events[-1].data
        assert (await status(client, stack.url, gid))["text"] == "done"
    assert fake.request_count == first + 1
    if provider == "anthropic":
        assert fake.requests[first].body["messages"] == messages  # as sent: the API merges
    else:
        assert [m["role"] for m in fake.requests[first].body["messages"]] == [
            "user",
            "assistant",
            "tool",
        ]


async def test_a_tool_round_trip_with_thinking_on_anthropic(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    anth.enqueue(
        message(
            [
                thinking(["I should ", "look it up."], signature="sig-turn-1"),
                redacted_thinking("EmwKredacted-turn-1"),
                text("Checking."),
                tool_use("toolu_rt1", "get_weather", ['{"city": ', '"Paris"}']),
            ],
            stop_reason="tool_use",
        )
    )
    anth.enqueue(text_reply(["Sunny ", "in Paris."]))
    first = anth.request_count
    question = {"role": "user", "content": "Weather in Paris?"}
    common = {
        "tools": [WEATHER_TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "max_tokens": 2048,
    }
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, messages=[question], **common)
        assert events[-1].json()["finishReason"] == "tool-calls"  # the client owes results
        content = (await status(client, stack.url, gid))["content"]
        assert content == [
            {"type": "thinking", "thinking": "I should look it up.", "signature": "sig-turn-1"},
            {"type": "redacted_thinking", "data": "EmwKredacted-turn-1"},
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_rt1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ]
        result = {"type": "tool_result", "tool_use_id": "toolu_rt1", "content": "22 C, sunny"}
        turns = [
            question,
            {"role": "assistant", "content": content},
            {"role": "user", "content": [result]},
        ]
        gid2, events2 = await run(client, stack.url, messages=turns, **common)
        assert events2[-1].json()["finishReason"] == "stop"
        assert (await status(client, stack.url, gid2))["text"] == "Sunny in Paris."

        # The fake checks what the API checks: a signature it did not issue is refused.
        forged = [
            question,
            {"role": "assistant", "content": [{**content[0], "signature": "forged"}, *content[1:]]},
            turns[2],
        ]
        _, events3 = await run(client, stack.url, messages=forged, **common)
        assert kinds(events3) == ["error"]
        assert "Invalid `signature`" in events3[0].json()["errorText"]
    assert anth.requests[first + 1].body["messages"] == turns
    assert anth.requests[first + 1].body["thinking"] == common["thinking"]
    assert anth.request_count == first + 3


async def test_a_tool_round_trip_on_openai(oai_srv: oai.FakeOpenAIServer, stack: Stack) -> None:
    oai_srv.enqueue(
        oai.reply(
            reasoning=["Need the ", "weather."],
            text=["Let me check."],
            tools=[oai.streamed_call("call_rt1", "get_weather", ['{"city"', ': "Oslo"}'])],
        )
    )
    oai_srv.enqueue(oai.reply(text=["Cold in Oslo."]))
    first = oai_srv.request_count
    question = {"role": "user", "content": "Weather in Oslo?"}
    common = {"provider": "openai", "tools": [WEATHER_TOOL]}
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, messages=[question], **common)
        assert events[-1].json()["finishReason"] == "tool-calls"
        content = (await status(client, stack.url, gid))["content"]
        assert content == [
            {"type": "thinking", "thinking": "Need the weather.", "signature": ""},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "call_rt1",
                "name": "get_weather",
                "input": {"city": "Oslo"},
            },
        ]
        result = {
            "type": "tool_result",
            "tool_use_id": "call_rt1",
            "content": [{"type": "text", "text": "-3 C"}],
        }
        turns = [
            question,
            {"role": "assistant", "content": content},
            {"role": "user", "content": [result]},
        ]
        gid2, events2 = await run(client, stack.url, messages=turns, **common)
        assert events2[-1].json()["finishReason"] == "stop", events2[-1].data
        assert (await status(client, stack.url, gid2))["text"] == "Cold in Oslo."
    assert oai_srv.requests[first + 1].body["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Let me check.",  # the unsigned thinking is dropped
            "tool_calls": [
                {
                    "id": "call_rt1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_rt1", "content": "-3 C"},
    ]


# --- citations become source parts ---------------------------------------------------------


async def chat_sources(stack: Stack, provider: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ask through the chat route: the source parts of the answer's SSE, and the
    answer as ``GET /v1/chat/{id}/messages`` keeps it."""
    chat = f"chat-sources-{provider}"
    ask = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Cite it"}]}
    body = {"id": chat, "messages": [ask], "trigger": "submit-message", "provider": provider}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        resp = await client.post("/v1/chat", json=body)
        assert resp.status_code == 200, resp.text
        events, _, _ = parse_sse(resp.content)
        assert events[-1].data == "[DONE]"
        typed = [e.json() for e in events if e.event is not None]
        assert typed[-1]["type"] == "finish", typed
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
    assert listed["status"] == "completed"
    sources = [e for e in typed if e["type"].startswith("source-")]
    answer = listed["messages"][-1]
    assert [p for p in answer["parts"] if p["type"].startswith("source-")] == sources
    return sources, answer


def source_url(source_id: str, url: str, title: str) -> dict[str, Any]:
    return {"type": "source-url", "sourceId": source_id, "url": url, "title": title}


async def test_anthropic_citations_reach_the_client_as_source_parts(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    web = {
        "type": "web_search_result_location",
        "url": "https://example.com/streams",
        "title": "Streams",
        "encrypted_index": "eidx",
        "cited_text": "Streams are logs.",
    }
    doc = {
        "type": "char_location",
        "cited_text": "append-only",
        "document_index": 0,
        "document_title": "Redis notes",
        "start_char_index": 0,
        "end_char_index": 11,
    }
    anth.enqueue(message([cited_text(["Streams ", "are logs."], [web, doc])]))
    sources, answer = await chat_sources(stack, "anthropic")
    assert sources == [
        source_url("s0.0", "https://example.com/streams", "Streams"),
        {
            "type": "source-document",
            "sourceId": "s0.1",
            "mediaType": "text/plain",
            "title": "Redis notes",
        },
    ]
    assert any(p["type"] == "text" and p["text"] == "Streams are logs." for p in answer["parts"])


async def test_openai_url_annotations_reach_the_client_as_source_parts(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    cited = oai.url_citation("https://example.com/oslo", "Oslo weather", 0, 4)
    oai_srv.enqueue(oai.reply(text=["Cold ", "in Oslo."], annotations=[cited]))
    sources, answer = await chat_sources(stack, "openai")
    assert sources == [source_url("s0", "https://example.com/oslo", "Oslo weather")]
    assert any(p["type"] == "text" and p["text"] == "Cold in Oslo." for p in answer["parts"])
