"""The ``openai`` provider on OpenAI's Responses API (``WORKER_OPENAI_API=responses``), end to
end: a front-end and a worker (real processes, the real ``openai`` SDK) against the local
Responses server (``tests/support/fake_openai_responses.py``) on 127.0.0.1.

Reasoning summaries, text and a function call the worker runs, over two steps (the second
response is sent the call and its output as ``function_call`` and ``function_call_output``
items); an error in the middle of the stream, ended as the other providers end it; a cancel
of the generation that reaches the server as ``POST /v1/responses/{id}/cancel``. A worker
killed mid-text whose successor re-attaches is in tests/faults/test_responses_takeover.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broadcaster.core.events import Usage
from tests.support import fake_openai_responses as fr
from tests.support.fake_anthropic import Frame
from tests.support.polling import poll
from tests.support.procs import parse_sse, read_sse
from tests.support.stacks import Stack, create, responses_env, start_stack, status

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(scope="module")
def srv() -> Iterator[fr.FakeResponsesServer]:
    with fr.FakeResponsesServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def stack(srv: fr.FakeResponsesServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("worker-responses")
    s = start_stack(base, "responses", responses_env(srv.base_url, base))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _worker_log_is_clean(stack: Stack) -> Iterator[None]:
    yield
    assert stack.worker.alive(), stack.worker.log()
    assert "Traceback" not in stack.worker.log()


async def read_to_end(client: httpx.AsyncClient, base: str, gid: str) -> list[dict[str, Any]]:
    result = await read_sse(client, f"{base}/v1/streams/{gid}/events")
    assert result.status == 200 and result.done
    assert result.ids == list(range(1, len(result.ids) + 1))
    return [e.json() for e in result.typed()]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_reasoning_text_and_a_tool_call_over_two_steps(
    srv: fr.FakeResponsesServer, stack: Stack
) -> None:
    srv.enqueue(
        fr.reply(
            reasoning=["Adding ", "two numbers."],
            text=["Let me ", "add."],
            calls=[fr.call("call_add1", "add", ['{"a": 1', ', "b": 2}'])],
            input_tokens=20,
            output_tokens=9,
        )
    )
    srv.enqueue(fr.reply(text=["The sum ", "is 3."], input_tokens=40, output_tokens=4))
    first, created = srv.request_count, srv.created
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(
            client,
            stack.url,
            prompt="What is 1 + 2?",
            provider="openai",
            model="gpt-5-mini",
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
        )
        events = await read_to_end(client, stack.url, gid)
        st = await status(client, stack.url, gid)
    assert types(events) == [
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
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert events[3] == {"type": "reasoning-delta", "id": "r0", "delta": "Adding "}
    assert events[13]["input"] == {"a": 1, "b": 2}
    assert events[14] == {
        "type": "tool-output-available",
        "toolCallId": "call_add1",
        "output": {"sum": 3},
    }
    assert events[-1]["finishReason"] == "stop"
    assert events[-1]["messageMetadata"] == {
        "model": "gpt-5-mini",
        "usage": Usage(60, 13, reasoning=2).ai_sdk(),  # the two reasoning chunks
    }
    assert st["status"] == "completed" and st["text"] == "Let me add.The sum is 3."
    assert srv.created == created + 2
    one, two = (srv.requests[first + i].body for i in (0, 1))
    assert (one["background"], one["store"], one["stream"]) == (True, True, True)
    # Both steps' calls name the same prompt cache: the generation's.
    assert one["prompt_cache_key"] == two["prompt_cache_key"] == gid
    assert one["reasoning"] == {"effort": "low", "summary": "auto"}
    assert [t["name"] for t in one["tools"]] == [t["name"] for t in two["tools"]]
    assert two["input"] == [
        {"role": "user", "content": "What is 1 + 2?"},
        {"role": "assistant", "content": "Let me add."},  # the summary is not sent back
        {
            "type": "function_call",
            "call_id": "call_add1",
            "name": "add",
            "arguments": '{"a": 1, "b": 2}',
        },
        {"type": "function_call_output", "call_id": "call_add1", "output": '{"sum": 3}'},
    ]


@pytest.mark.parametrize(
    "fault",
    [fr.stream_error("the engine broke"), fr.failed("the engine broke")],
    ids=["error-event", "response-failed"],
)
async def test_an_error_mid_stream_ends_the_stream_with_it(
    srv: fr.FakeResponsesServer, stack: Stack, fault: Frame
) -> None:
    """As for the other providers: output was shown, so the stream ends with ``error``
    after it, and the model is not called again."""
    partial = fr.reply(text=["par", "tial", " answer"])[:6]  # up to the second delta
    srv.enqueue([*partial, fault])
    created = srv.created
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="fail late", provider="openai")
        events = await read_to_end(client, stack.url, gid)
        st = await status(client, stack.url, gid)
    assert types(events) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "error",
    ]
    assert "mid-stream" in events[-1]["errorText"]
    assert "the engine broke" in events[-1]["errorText"]
    assert (st["status"], st["text"]) == ("failed", "partial")
    assert srv.created == created + 1


async def test_an_error_before_output_is_retried_invisibly(
    srv: fr.FakeResponsesServer, stack: Stack
) -> None:
    srv.enqueue([fr.http_error(500)])
    srv.enqueue(fr.reply(text=["fine"]))
    created = srv.created
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="retry me", provider="openai")
        events = await read_to_end(client, stack.url, gid)
    assert types(events) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert srv.created == created + 1  # the 500 created nothing


async def test_a_cancel_of_the_generation_cancels_the_response(
    srv: fr.FakeResponsesServer, stack: Stack
) -> None:
    opened = threading.Event()
    script = fr.reply(text=["Never ", "ending", " story"])
    srv.enqueue([*script[:5], fr.gate(opened), *script[5:]])
    cancels = len(srv.cancelled)
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="go on", provider="openai")

        async def shown() -> bool:
            body = await status(client, stack.url, gid)
            return body["text"] == "Never "

        await poll(shown, "the first text delta in the stream")
        r = await client.post(f"{stack.url}/v1/generations/{gid}/cancel")
        assert r.status_code == 202, r.text
        events = await read_to_end(client, stack.url, gid)
        assert srv.wait_cancelled(cancels + 1), srv.cancelled
    opened.set()
    response_id = srv.cancelled[-1]
    assert srv.status(response_id) == "cancelled"
    assert types(events)[-1] == "abort"
    assert "Traceback" not in stack.worker.log()


async def test_url_annotations_reach_the_client_as_source_parts(
    srv: fr.FakeResponsesServer, stack: Stack
) -> None:
    cited = fr.url_citation("https://example.com/sum", "Sums", 0, 7)
    srv.enqueue(fr.reply(text=["The sum ", "is 3."], annotations=[cited]))
    chat = "chat-responses-sources"
    ask = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "1 + 2?"}]}
    body = {"id": chat, "messages": [ask], "trigger": "submit-message", "provider": "openai"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        resp = await client.post("/v1/chat", json=body)
        assert resp.status_code == 200, resp.text
        events, _, _ = parse_sse(resp.content)
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
    typed = [e.json() for e in events if e.event is not None]
    expected = {
        "type": "source-url",
        "sourceId": "s0.0.0",  # the message is the response's first output
        "url": "https://example.com/sum",
        "title": "Sums",
    }
    assert [e for e in typed if e["type"].startswith("source-")] == [expected]
    assert types(typed)[-1] == "finish"
    assert listed["status"] == "completed"
    answer = listed["messages"][-1]
    assert [p for p in answer["parts"] if p["type"].startswith("source-")] == [expected]
