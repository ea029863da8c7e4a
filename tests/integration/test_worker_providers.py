"""Several providers in one deployment, end to end on real processes: a Redis server of the
module's own, a front-end and a worker with ``WORKER_PROVIDERS=anthropic,openai`` whose SDKs
point at the local fake Anthropic and fake OpenAI servers (``ANTHROPIC_BASE_URL``,
``OPENAI_BASE_URL``), scripted per test.

It shows that every field of a request reaches each model as sent or as translated; that
a two-turn conversation (thinking, a tool call, its result sent back with the ``content``
of ``GET /v1/generations/{id}``) passes the fakes' checks of signatures and tool ids; the
OpenAI-compatible servers' quirks (vLLM's ``reasoning_content`` and ``reasoning``,
Ollama's whole tool call) as events; each OpenAI error ending as the contract says; a
request for a provider nobody serves refused with nothing queued; bad requests refused
with the field named and nothing queued; and a job left in the queue of the previous
version still run.

Scripts are queued on the fakes in the order the requests come: the tests of this module
run one at a time and each consumes exactly the scripts it queued.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis, free_port
from broadcaster.core.jobs import queues
from broadcaster.core.request import PROVIDERS
from tests.support import fake_openai as oai
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    message,
    redacted_thinking,
    text,
    text_reply,
    thinking,
    tool_use,
)
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

    @property
    def url(self) -> str:
        return self.frontend.url

    def stop(self) -> None:
        self.worker.stop()
        self.frontend.stop()
        self.redis.stop()


def start_stack(base: Path, name: str, worker_env: dict[str, str]) -> Stack:
    redis = EmbeddedRedis(base / f"{name}-redis", persistent=False)
    redis.start(reuse=False)
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, base, f"{name}-frontend"))
        procs.append(start_worker(redis.url, base, f"{name}-worker", env=worker_env))
    except BaseException:
        for p in procs:
            p.stop()
        redis.stop()
        raise
    return Stack(redis, procs[0], procs[1])


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


# --- every field reaches the model -----------------------------------------------------------


async def test_every_field_reaches_anthropic_as_sent(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    anth.enqueue(text_reply(["ok"]))
    first = anth.request_count
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    # Anthropic takes no top_k and no forced tool while thinking: this one does not think.
    body = {**FULL_REQUEST, "tools": [WEATHER_TOOL, server_tool], "thinking": {"type": "disabled"}}
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


# --- two turns: thinking, a tool call, its result --------------------------------------------


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


# --- OpenAI errors ---------------------------------------------------------------------------


async def test_openai_errors_before_output_are_retried_invisibly(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue([oai.http_error(429)])  # retry-after: 1
    oai_srv.enqueue([oai.http_error(500)])
    oai_srv.enqueue(oai.reply(text=["third ", "time"]))
    first = oai_srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="retry", provider="openai")
        assert kinds(events) == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish",
        ]
        assert (await status(client, stack.url, gid))["text"] == "third time"
    started = [e.started_at for e in oai_srv.exchanges[first:]]
    assert len(started) == 3
    assert started[1] - started[0] >= 0.9  # retry-after honoured


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            [*oai.reply(text=["par", "tial"])[:3], oai.stream_error("engine overloaded")],
            "engine overloaded",
        ),
        (oai.reply(text=["par", "tial"])[:3], "without a finish_reason"),
        ([*oai.reply(text=["par", "tial"])[:3], oai.stall()], "timed out"),
        ([*oai.reply(text=["par", "tial"])[:3], oai.drop()], "cannot reach"),
    ],
    ids=["mid-stream-error", "no-finish-reason", "stall", "dropped"],
)
async def test_openai_failures_after_output_end_with_error(
    oai_srv: oai.FakeOpenAIServer, stack: Stack, script: Any, expected: str
) -> None:
    oai_srv.enqueue(script)
    first = oai_srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="fail late", provider="openai")
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
    assert oai_srv.request_count == first + 1  # output was shown: never retried


async def test_openai_client_error_and_untranslatable_request_fail_at_once(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue(
        [oai.http_error(400, oai.error_body("model 'x' not found", "invalid_request_error"))]
    )
    first = oai_srv.request_count
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, prompt="x", provider="openai")
        assert kinds(events) == ["error"]
        assert "model 'x' not found" in events[0].json()["errorText"]
        _, events = await run(
            client, stack.url, provider="openai", messages=[{"role": "user", "content": [url_doc]}]
        )
        assert kinds(events) == ["error"]
        assert "'url' source has no OpenAI equivalent" in events[0].json()["errorText"]
    assert oai_srv.request_count == first + 1  # the second never reached the server


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
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS, ids=[f for _, f in BAD_REQUESTS])
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
