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

import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis, free_port
from broadcaster.generations.jobs import queues
from broadcaster.generations.request import PROVIDERS
from tests.support import fake_openai as oai
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    drop,
    http_error,
    message,
    redacted_thinking,
    sse_error,
    stall,
    text,
    text_reply,
    thinking,
    tool_use,
)
from tests.support.polling import poll
from tests.support.procs import Proc, SSEEvent, read_sse, start_frontend, start_worker

pytestmark = pytest.mark.anyio

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
PDF = base64.b64encode(b"%PDF-1.4\n%fake\n").decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


# --- processes -------------------------------------------------------------------------------


@dataclass
class Stack:
    redis: EmbeddedRedis
    frontend: Proc
    worker: Proc
    metrics_port: int

    @property
    def url(self) -> str:
        return self.frontend.url

    async def provider_errors(self) -> dict[str, float]:
        """The worker's ``worker_provider_errors_total``, by kind."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return {
            sample.labels["kind"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "worker_provider_errors"
            for sample in family.samples
            if sample.name == "worker_provider_errors_total"
        }

    def stop(self) -> None:
        self.worker.stop()
        self.frontend.stop()
        self.redis.stop()


def start_stack(base: Path, name: str, worker_env: dict[str, str]) -> Stack:
    redis = EmbeddedRedis(base / f"{name}-redis", persistent=False)
    redis.start(reuse=False)
    procs: list[Proc] = []
    metrics_port = free_port()
    env = {**worker_env, "WORKER_METRICS_PORT": str(metrics_port)}
    try:
        procs.append(start_frontend(redis.url, base, f"{name}-frontend"))
        procs.append(start_worker(redis.url, base, f"{name}-worker", env=env))
    except BaseException:
        for p in procs:
            p.stop()
        redis.stop()
        raise
    return Stack(redis, procs[0], procs[1], metrics_port)


def worker_env(anthropic_url: str, openai_url: str, **extra: str) -> dict[str, str]:
    return {
        "WORKER_PROVIDERS": "anthropic,openai",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "ANTHROPIC_API_KEY": "test",
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "test",
        "WORKER_MERGE_MS": "0",
        "WORKER_RETRY_BASE_SECONDS": "0.05",
        "WORKER_READ_TIMEOUT_SECONDS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def anth() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def oai_srv() -> Iterator[oai.FakeOpenAIServer]:
    with oai.FakeOpenAIServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture
def fakes(
    anth: FakeAnthropicServer, oai_srv: oai.FakeOpenAIServer
) -> dict[str, FakeAnthropicServer]:
    """The fake server of each provider."""
    return {"anthropic": anth, "openai": oai_srv}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-providers")


@pytest.fixture(scope="module")
def stack(
    anth: FakeAnthropicServer, oai_srv: oai.FakeOpenAIServer, base_dir: Path
) -> Iterator[Stack]:
    s = start_stack(base_dir, "main", worker_env(anth.base_url, oai_srv.base_url))
    try:
        assert "serving anthropic, openai" in s.worker.log()
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _worker_log_is_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        assert stack.worker.alive(), stack.worker.log()
        assert "Traceback" not in stack.worker.log()


# --- helpers ---------------------------------------------------------------------------------


async def create(client: httpx.AsyncClient, base: str, **body: Any) -> str:
    r = await client.post(base + "/v1/generations", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def run(client: httpx.AsyncClient, base: str, **body: Any) -> tuple[str, list[SSEEvent]]:
    """Create a generation and read its stream to the end: (id, the typed events)."""
    gid = await create(client, base, **body)
    result = await read_sse(client, f"{base}/v1/streams/{gid}/events")
    assert result.status == 200 and result.done
    assert result.ids == list(range(1, len(result.ids) + 1))
    return gid, result.typed()


async def status(client: httpx.AsyncClient, base: str, gid: str) -> dict[str, Any]:
    r = await client.get(f"{base}/v1/generations/{gid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def kinds(events: list[SSEEvent]) -> list[str]:
    return [e.event or "" for e in events]


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe


def queued(redis_url: str) -> int:
    """Entries in every job queue."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        return sum(int(client.xlen(key)) for key in queues(PROVIDERS))
    finally:
        client.close()


FULL_REQUEST: dict[str, Any] = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    "title": "report.pdf",
                },
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"},
                },
            ],
        }
    ],
    "model": "some-model",
    "max_tokens": 4000,
    "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "temperature": 1,
    "top_p": 0.95,
    "top_k": 40,
    "stop_sequences": ["\n\nHuman:"],
    "metadata": {"user_id": "user-42", "ticket": 7},
    "service_tier": "standard_only",
}


ANTHROPIC_HISTORY: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": [
            *FULL_REQUEST["messages"][0]["content"],
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            {
                "type": "document",
                "source": {"type": "content", "content": [{"type": "text", "text": "part"}]},
                "title": "notes",
                "context": "from the wiki",
                "citations": {"enabled": True},
            },
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {"query": "weather"},
            },
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {
                "type": "tool_use",
                "id": "toolu_h1",
                "name": "get_weather",
                "input": {"city": "Oslo"},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_h1",
                "content": [
                    {"type": "text", "text": "-3 C"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
                "is_error": False,
            },
            {"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}},
        ],
    },
]
"""Every content block type in a conversation, for Anthropic (a document by URL, an
image in a tool result and server tools have no Chat Completions equivalent)."""


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
        "messageMetadata": {"model": "qwen3", "usage": {"inputTokens": 21, "outputTokens": 9}},
    }
    assert st["text"] == "Héllo"
    assert st["usage"] == {"input_tokens": 21, "output_tokens": 9}


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
        "messageMetadata": {"model": "m-1", "usage": {"inputTokens": 21, "outputTokens": 9}},
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
            base_dir, "ollama", {**env, "WORKER_OPENAI_MAX_TOKENS_PARAM": "max_tokens"}
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


# --- OpenAI errors ---------------------------------------------------------------------------


CLEAN_RUN = [
    "start",
    "start-step",
    "text-start",
    "text-delta",
    "text-delta",
    "text-end",
    "finish-step",
    "finish",
]
"""A two-chunk answer's events, with no trace of a failed attempt."""


async def test_openai_errors_before_output_are_retried_invisibly(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue([oai.http_error(429)])  # retry-after: 1
    oai_srv.enqueue([oai.http_error(500)])
    oai_srv.enqueue(oai.reply(text=["third ", "time"]))
    first = oai_srv.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="retry", provider="openai")
        assert kinds(events) == CLEAN_RUN
        assert (await status(client, stack.url, gid))["text"] == "third time"
    started = [e.started_at for e in oai_srv.exchanges[first:]]
    assert len(started) == 3
    assert started[1] - started[0] >= 0.9  # retry-after honoured
    assert counted(before, await stack.provider_errors()) == {
        "rate_limited": 1,
        "server_error": 1,
    }


def counted(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The provider errors counted between two readings of the worker's metrics."""
    return {
        kind: after[kind] - before.get(kind, 0)
        for kind in after
        if after[kind] != before.get(kind, 0)
    }


ANTHROPIC_PARTIAL = text_reply(["par", "tial"])[:4]
OPENAI_PARTIAL = oai.reply(text=["par", "tial"])[:3]
"""The start of a reply: two text deltas that viewers see (Anthropic's message_start,
content_block_start and deltas; OpenAI's role chunk and deltas)."""

EARLY_FAULTS: list[tuple[str, list[Any], str]] = [
    ("anthropic", [http_error(529, headers={"retry-after-ms": "50"})], "overloaded"),
    ("anthropic", [stall(send_headers=False)], "timeout"),  # no headers in the read timeout
    ("anthropic", [drop()], "connection"),  # the connection closed before any answer
    ("anthropic", [sse_error("overloaded_error", "Overloaded")], "mid_stream"),  # first thing
    ("anthropic", [], "incomplete"),  # a 200 with an empty stream
    ("openai", [oai.http_error(503, headers={"retry-after-ms": "50"})], "server_error"),
    ("openai", [oai.stall(send_headers=False)], "timeout"),
    ("openai", [oai.drop()], "connection"),
    ("openai", [oai.stream_error("model is loading")], "mid_stream"),  # an error object first
    ("openai", [oai.done()], "incomplete"),  # [DONE] and nothing before it
]

LATE_FAULTS: list[tuple[str, list[Any], str, str]] = [
    ("anthropic", [*ANTHROPIC_PARTIAL, sse_error("api_error", "boom")], "mid_stream", "boom"),
    ("anthropic", ANTHROPIC_PARTIAL, "incomplete", "before message_stop"),
    ("anthropic", [*ANTHROPIC_PARTIAL, stall()], "timeout", "timed out"),
    ("anthropic", [*ANTHROPIC_PARTIAL, drop()], "connection", "cannot reach"),
    ("openai", [*OPENAI_PARTIAL, oai.stream_error("boom")], "mid_stream", "boom"),
    ("openai", OPENAI_PARTIAL, "incomplete", "without a finish_reason"),
    ("openai", [*OPENAI_PARTIAL, oai.stall()], "timeout", "timed out"),
    ("openai", [*OPENAI_PARTIAL, oai.drop()], "connection", "cannot reach"),
]


@pytest.mark.parametrize("case", EARLY_FAULTS, ids=[f"{p}-{k}" for p, _, k in EARLY_FAULTS])
async def test_every_fault_before_output_is_retried_invisibly(
    fakes: dict[str, FakeAnthropicServer], stack: Stack, case: tuple[str, list[Any], str]
) -> None:
    """Either provider, the same rule: nothing was shown, so the call is made again and
    viewers never see the failed one; the worker counts the error by its kind."""
    provider, fault, kind = case
    fake = fakes[provider]
    fake.enqueue(fault)
    second = ["second ", "time"]
    fake.enqueue(text_reply(second) if provider == "anthropic" else oai.reply(text=second))
    first = fake.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="retry", provider=provider)
        assert kinds(events) == CLEAN_RUN  # no data-retry, no error: nothing was shown
        st = await status(client, stack.url, gid)
        assert (st["status"], st["text"], st["error"]) == ("completed", "second time", None)
    assert fake.request_count == first + 2
    assert counted(before, await stack.provider_errors()) == {kind: 1}


@pytest.mark.parametrize("case", LATE_FAULTS, ids=[f"{p}-{k}" for p, _, k, _ in LATE_FAULTS])
async def test_every_fault_after_output_ends_with_error(
    fakes: dict[str, FakeAnthropicServer], stack: Stack, case: tuple[str, list[Any], str, str]
) -> None:
    """Either provider, the same rule: output was shown, so the stream ends with an
    ``error`` after it and the call is not made again."""
    provider, script, kind, expected = case
    fake = fakes[provider]
    fake.enqueue(script)
    first = fake.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="fail late", provider=provider)
        assert kinds(events) == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "error",
        ]
        assert expected in events[-1].json()["errorText"]
        st = await status(client, stack.url, gid)
        assert (st["status"], st["text"]) == ("failed", "partial")
    assert fake.request_count == first + 1  # output was shown: never retried
    assert counted(before, await stack.provider_errors()) == {kind: 1}


async def test_openai_connection_refused_fails_with_a_clear_error(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    own = start_stack(
        base_dir,
        "openai-refused",
        {
            **worker_env(anth.base_url, closed),
            "WORKER_PROVIDERS": "openai",
            "WORKER_PROVIDER_RETRIES": "1",
        },
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gid, events = await run(client, own.url, prompt="anyone?", provider="openai")
            assert kinds(events) == ["error"]
            error_text = events[0].json()["errorText"]
            assert error_text.startswith("cannot reach the model provider"), error_text
            st = await status(client, own.url, gid)
            assert (st["status"], st["error"], st["usage"]) == ("failed", error_text, None)
        assert await own.provider_errors() == {"connection": 2}  # one retry, then the error
        assert "Traceback" not in own.worker.log()
    finally:
        own.stop()


async def test_an_openai_client_error_fails_at_once(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue(
        [oai.http_error(400, oai.error_body("model 'x' not found", "invalid_request_error"))]
    )
    first = oai_srv.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, prompt="x", provider="openai")
        assert kinds(events) == ["error"]
        assert "model 'x' not found" in events[0].json()["errorText"]
    assert oai_srv.request_count == first + 1
    assert counted(before, await stack.provider_errors()) == {"client_error": 1}


# --- refusals at creation --------------------------------------------------------------------


BAD_REQUESTS = [
    ({"prompt": "x", "tools": [{"input_schema": {"type": "object"}}]}, "tools[0].name"),
    ({"prompt": "x", "tools": [{"name": "f"}]}, "tools[0].input_schema"),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}
            ]
        },
        "messages[0].content[0].tool_use_id",
    ),
    (
        {"prompt": "x", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 2000}},
        "thinking.budget_tokens",
    ),
    (
        {"prompt": "x", "thinking": {"type": "enabled", "budget_tokens": 512}},
        "thinking.budget_tokens",
    ),
    ({"prompt": "x", "temperature": 1.5}, "temperature"),
    (
        {
            "prompt": "x",
            "max_tokens": 2048,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "any"},
        },
        "tool_choice.type",
    ),
    ({"prompt": "x", "provider": "openai", "temperature": 2.5}, "temperature"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "not base64!",
                            },
                        }
                    ],
                }
            ]
        },
        "messages[0].content[0].source.data",
    ),
    ({"prompt": "x", "promtp": "typo"}, "promtp"),
    (
        {"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]},
        "tools[0].type",
    ),
    # What Chat Completions has no equivalent for, refused before it is queued.
    (
        {
            "prompt": "x",
            "provider": "openai",
            "tools": [{"type": "web_search_20250305", "name": "w"}],
        },
        "tools[0].type",
    ),
    (
        {
            "provider": "openai",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "url", "url": "https://example.com/a.pdf"},
                        }
                    ],
                }
            ],
        },
        "messages[0].content[0].source.type",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"),
    BAD_REQUESTS,
    ids=[f"{b.get('provider', 'anthropic')}-{f}" for b, f in BAD_REQUESTS],
)
async def test_a_bad_request_is_422_naming_the_field_and_nothing_is_queued(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    before = queued(stack.redis.url)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(stack.url + "/v1/generations", json={**body, "id": "bad-one"})
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"
        assert field in r.json()["message"]
        assert (await client.get(stack.url + "/v1/generations/bad-one")).status_code == 404
    assert queued(stack.redis.url) == before


async def test_an_image_counts_against_the_body_limit(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    """Base64 in the body: an image that fits reaches the model byte for byte; one that
    takes the body over the limit (1 MiB by default) is 413, and nothing is queued."""

    def with_png(size: int) -> dict[str, Any]:
        data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(size)).decode()
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return {"messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]}

    anth.enqueue(text_reply(["a picture"]))
    first = anth.request_count
    fits = with_png(700_000)  # about 930 KB of base64
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, **fits)
        assert events[-1].event == "finish", events[-1].data
        # The worker removes a job from its queue just after the generation's end.
        await poll(_async(lambda: queued(stack.redis.url) == 0), "the first job removed", 10)
        before = queued(stack.redis.url)
        r = await client.post(
            stack.url + "/v1/generations", json={**with_png(800_000), "id": "big"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_large"
        assert (await client.get(stack.url + "/v1/generations/big")).status_code == 404
    assert queued(stack.redis.url) == before
    assert anth.requests[first].body["messages"] == fits["messages"]
    assert anth.request_count == first + 1


async def test_a_provider_nobody_serves_is_refused_and_nothing_queued(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    own = start_stack(
        base_dir,
        "anthropic-only",
        {**worker_env(anth.base_url, "http://127.0.0.1:1/v1"), "WORKER_PROVIDERS": "anthropic"},
    )
    try:
        anth.enqueue(text_reply(["served"]))
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                own.url + "/v1/generations",
                json={"prompt": "x", "provider": "openai", "id": "unserved"},
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "provider_unavailable"
            assert "openai" in r.json()["message"]
            assert (await client.get(own.url + "/v1/generations/unserved")).status_code == 404
            assert queued(own.redis.url) == 0
            _, events = await run(client, own.url, prompt="x", provider="anthropic")
            assert events[-1].event == "finish"
    finally:
        own.stop()


async def test_a_job_in_the_previous_versions_queue_still_runs(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    """What a front-end of the previous version leaves: a request without a provider, its
    id on the single queue. The worker that serves Anthropic runs it."""
    redis = EmbeddedRedis(base_dir / "legacy-redis", persistent=False)
    redis.start(reuse=False)
    client_ = redis_sync.Redis.from_url(redis.url)
    old_request = {"prompt": "from the old queue", "model": "claude-old", "max_tokens": 50}
    meta = keys.meta_key("legacy-job")
    client_.hset(
        meta,
        mapping={
            "kind": "generation",
            "seq": 0,
            "status": "queued",
            "attempt": 0,
            "created_at": 1,
            "updated_at": 1,
            "request": json.dumps(old_request),
        },
    )
    client_.xadd(keys.LEGACY_JOBS_KEY, {"id": "legacy-job"})
    anth.enqueue(text_reply(["still ", "runs"]))
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, base_dir, "legacy-frontend"))
        procs.append(
            start_worker(
                redis.url,
                base_dir,
                "legacy-worker",
                env={
                    **worker_env(anth.base_url, f"http://127.0.0.1:{free_port()}/v1"),
                    "WORKER_PROVIDERS": "anthropic",
                },
            )
        )
        async with httpx.AsyncClient(timeout=30) as client:
            result = await read_sse(client, f"{procs[0].url}/v1/streams/legacy-job/events")
            assert result.typed()[-1].event == "finish"
            st = await status(client, procs[0].url, "legacy-job")
        assert (st["status"], st["text"], st["provider"]) == (
            "completed",
            "still runs",
            "anthropic",
        )
        assert client_.xlen(keys.LEGACY_JOBS_KEY) == 0  # acknowledged and deleted
    finally:
        for p in procs:
            p.stop()
        client_.close()
        redis.stop()
