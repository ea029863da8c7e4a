"""The worker with the real Anthropic SDK, end to end on real processes: a Redis server, a
front-end and a worker (``WORKER_PROVIDER=anthropic``) whose ``ANTHROPIC_BASE_URL`` points at
the local fake Anthropic server, scripted per test. Viewers read the SSE stream over HTTP.

The module runs its own Redis server, so no other worker (such as the session's
``deployment``, with the fake provider) can take its jobs. Scripts are queued on the fake
server in the order the requests will come: the tests of this module run one at a time and
each consumes exactly the scripts it queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import free_port
from broadcaster.core.events import Usage
from broadcaster.http.openapi import GenerationStatus
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    http_error,
    message,
    sse_error,
    stall,
    text,
    text_reply,
    thinking,
    tool_use,
)
from tests.support.procs import SSEEvent, SSEResult, parse_sse, read_sse
from tests.support.stacks import (
    Stack,
    anthropic_env,
    assert_well_formed,
    create,
    start_stack,
    status,
)
from worker.providers.anthropic_cache import EPHEMERAL

pytestmark = pytest.mark.anyio

MODEL = "claude-test-model"


# --- processes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-anthropic")


@pytest.fixture(scope="module")
def stack(srv: FakeAnthropicServer, base_dir: Path) -> Iterator[Stack]:
    """The module's stack: one event per delta, a 1 s read timeout, fast retries."""
    s = start_stack(base_dir, "main", anthropic_env(srv.base_url))
    try:
        assert "provider anthropic" in s.worker.log()
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


def deltas(typed: list[SSEEvent], kind: str = "text-delta", key: str = "delta") -> list[str]:
    return [e.json()[key] for e in typed if e.event == kind]


class LiveViewer:
    """Reads an SSE stream as it arrives, noting when events come."""

    def __init__(self) -> None:
        self.events: list[SSEEvent] = []
        self.first_text = asyncio.Event()
        self.done_at: float | None = None

    async def run(self, client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("GET", url, headers={"accept": "text/event-stream"}) as resp:
            assert resp.status_code == 200
            buf = b""
            async for chunk in resp.aiter_raw():
                buf += chunk
                end = buf.rfind(b"\n\n")
                if end < 0:
                    continue
                events, _, _ = parse_sse(buf[: end + 2])
                buf = buf[end + 2 :]
                for e in events:
                    self.events.append(e)
                    if e.event == "text-delta":
                        self.first_text.set()
                    if e.data == "[DONE]":
                        self.done_at = time.monotonic()


# --- tests -----------------------------------------------------------------------------------


async def test_thinking_text_and_tool_use_stream_in_order(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    reasoning = ["Let me ", "think ", "about it."]
    chunks = ["Hé", "llo, ", "wörld 🙂\n", "  spaced  ", "end."]
    fragments = ['{"city"', ': "Par', 'is", "days"', ": 3, ", '"units": ["C"]}']
    srv.enqueue(
        message(
            [
                thinking(reasoning),
                text(chunks),
                tool_use("toolu_01abc", "get_weather", fragments),
            ],
            input_tokens=31,
            output_tokens=57,
            stop_reason="tool_use",
        )
    )
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(
            client,
            stack.url,
            prompt="What's the weather in Paris?",
            model=MODEL,
            max_tokens=321,
            system="Be terse.",
        )
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == [
            "start",
            "start-step",
            "reasoning-start",
            *["reasoning-delta"] * (len(reasoning) + 1),  # the last carries the signature
            "reasoning-end",
            "text-start",
            *["text-delta"] * len(chunks),
            "text-end",
            "tool-input-start",
            *["tool-input-delta"] * len(fragments),
            "tool-input-available",
            "finish-step",
            "finish",
        ]
        assert typed[0].json() == {"type": "start", "messageId": gid}
        assert deltas(typed, "reasoning-delta") == [*reasoning, ""]
        assert typed[len(reasoning) + 3].json() == {
            "type": "reasoning-delta",
            "id": "r0",
            "delta": "",
            "providerMetadata": {"anthropic": {"signature": "sig_fake"}},
        }
        assert deltas(typed) == chunks
        assert {e.json()["id"] for e in typed if e.event.startswith("reasoning")} == {"r0"}
        assert {e.json()["id"] for e in typed if e.event.startswith("text")} == {"t1"}
        tool_events = [e.json() for e in typed if e.event.startswith("tool-input")]
        assert tool_events[0] == {
            "type": "tool-input-start",
            "toolCallId": "toolu_01abc",
            "toolName": "get_weather",
        }
        assert all(e["toolCallId"] == "toolu_01abc" for e in tool_events)
        assert "".join(deltas(typed, "tool-input-delta", "inputTextDelta")) == "".join(fragments)
        assert tool_events[-1] == {
            "type": "tool-input-available",
            "toolCallId": "toolu_01abc",
            "toolName": "get_weather",
            "input": {"city": "Paris", "days": 3, "units": ["C"]},
        }
        assert typed[-1].json() == {
            "type": "finish",
            "finishReason": "tool-calls",
            "messageMetadata": {
                "model": MODEL,
                "usage": Usage(31, 57).ai_sdk(),
            },
        }

        st = await status(client, stack.url, gid)
        # The body is the one /openapi.json documents, field for field.
        assert set(st) == set(GenerationStatus.model_fields), st
        GenerationStatus.model_validate(st)
        assert st["status"] == "completed"
        assert st["text"] == "".join(chunks)
        assert st["usage"] == Usage(31, 57).snake()
        assert st["error"] is None
        assert st["last_event_id"] == result.ids[-1]
        assert st["provider"] == "anthropic"
        assert st["model"] == MODEL
        assert st["content"] == [
            {"type": "thinking", "thinking": "".join(reasoning), "signature": "sig_fake"},
            {"type": "text", "text": "".join(chunks)},
            {
                "type": "tool_use",
                "id": "toolu_01abc",
                "name": "get_weather",
                "input": {"city": "Paris", "days": 3, "units": ["C"]},
            },
        ]

    assert srv.request_count == first + 1
    headers, body = srv.requests[first]
    # the SDK sends ANTHROPIC_API_KEY as x-api-key or (newer versions) as a bearer token
    assert headers.get("x-api-key", headers.get("authorization")) in ("test", "Bearer test")
    assert body["model"] == MODEL
    assert body["max_tokens"] == 321
    # Caching is on by default: the system prompt and the newest message carry breakpoints.
    assert body["system"] == [{"type": "text", "text": "Be terse.", "cache_control": EPHEMERAL}]
    ask = {"type": "text", "text": "What's the weather in Paris?", "cache_control": EPHEMERAL}
    assert body["messages"] == [{"role": "user", "content": [ask]}]
    assert body["stream"] is True


async def test_deltas_are_merged_within_the_merge_window(
    srv: FakeAnthropicServer, base_dir: Path
) -> None:
    own = start_stack(base_dir, "merge", anthropic_env(srv.base_url, WORKER_MERGE_MS="200"))
    try:
        reasoning = [f"r{i} " for i in range(20)]
        chunks = [f"w{i}{'é' if i % 3 else ' '}" for i in range(40)]
        srv.enqueue(message([thinking(reasoning), text(chunks)], input_tokens=5))
        async with httpx.AsyncClient(timeout=30) as client:
            gid = await create(client, own.url, prompt="merge", max_tokens=100)
            result = await read_sse(client, f"{own.url}/v1/streams/{gid}/events")
            typed = assert_well_formed(result)
            texts = deltas(typed)
            assert 1 <= len(texts) < 10  # 40 chunks in a burst: a few merged events
            assert "".join(texts) == "".join(chunks)
            thoughts = deltas(typed, "reasoning-delta")
            assert 1 <= len(thoughts) < 10
            assert "".join(thoughts) == "".join(reasoning)
            kinds = [e.event for e in typed if not e.event.endswith("-delta")]
            assert kinds == [
                "start",
                "start-step",
                "reasoning-start",
                "reasoning-end",
                "text-start",
                "text-end",
                "finish-step",
                "finish",
            ]
            order = [e.event for e in typed]
            assert order.index("reasoning-end") < order.index("text-start")
            assert max(i for i, k in enumerate(order) if k == "reasoning-delta") < order.index(
                "reasoning-end"
            )
            assert min(i for i, k in enumerate(order) if k == "text-delta") > order.index(
                "text-start"
            )
            st = await status(client, own.url, gid)
            assert st["status"] == "completed"
            assert st["text"] == "".join(chunks)
            assert st["usage"] == Usage(5, 60).snake()
        assert "Traceback" not in own.worker.log()
    finally:
        own.stop()


async def test_cancel_stops_the_model_call(srv: FakeAnthropicServer, stack: Stack) -> None:
    chunks = [f"slow{i} " for i in range(50)]
    srv.enqueue(text_reply(chunks, chunk_delay=0.2))
    index = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="take your time")
        viewer = LiveViewer()
        reading = asyncio.create_task(viewer.run(client, f"{stack.url}/v1/streams/{gid}/events"))
        await asyncio.wait_for(viewer.first_text.wait(), 15)

        cancelled_at = time.monotonic()
        r = await client.post(f"{stack.url}/v1/generations/{gid}/cancel")
        assert r.status_code == 202, r.text
        assert r.json() == {"id": gid, "status": "cancelled"}
        await asyncio.wait_for(reading, 5)
        assert viewer.done_at is not None
        assert viewer.done_at - cancelled_at < 2.0  # the contract's bound
        print(f"cancel -> [DONE] on the viewer: {(viewer.done_at - cancelled_at) * 1000:.0f} ms")

        result = SSEResult(200, httpx.Headers(), events=viewer.events)
        typed = assert_well_formed(result)
        assert typed[-1].json() == {"type": "abort", "reason": "cancelled"}
        shown = deltas(typed)
        assert 1 <= len(shown) < len(chunks)
        assert shown == chunks[: len(shown)]

        # the request to the model is closed, long before its script's end
        assert await asyncio.to_thread(srv.wait_client_closed, index, 3)
        assert not srv.exchanges[index].completed

        st = await status(client, stack.url, gid)
        assert st["status"] == "cancelled"
        assert st["text"] == "".join(shown)
        assert st["last_event_id"] == result.ids[-1]
        assert st["error"] is None

        again = await client.post(f"{stack.url}/v1/generations/{gid}/cancel")
        assert again.status_code == 409
        assert "message" in again.json()

        await asyncio.sleep(0.5)  # nothing is appended after the abort
        assert (await status(client, stack.url, gid))["last_event_id"] == result.ids[-1]
    assert srv.request_count == index + 1


async def test_a_viewer_that_disconnects_never_cancels(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    chunks = [f"c{i} " for i in range(12)]
    srv.enqueue(text_reply(chunks, chunk_delay=0.1))
    index = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="keep going")
        url = f"{stack.url}/v1/streams/{gid}/events"
        early = await read_sse(client, url, stop_after=5)  # ... and then it goes away
        assert early.ids == [1, 2, 3, 4, 5]
        assert not early.done
        assert (await status(client, stack.url, gid))["status"] == "running"

        later = await read_sse(client, url, last_event_id="5")
        typed = later.typed()
        assert later.ids[0] == 6 and later.done
        assert typed[-1].json()["finishReason"] == "stop"
        assert deltas(early.typed() + typed) == chunks
        st = await status(client, stack.url, gid)
        # The body is the one /openapi.json documents, field for field.
        assert set(st) == set(GenerationStatus.model_fields), st
        GenerationStatus.model_validate(st)
        assert st["status"] == "completed"
        assert st["text"] == "".join(chunks)
    assert srv.exchanges[index].completed
    assert not srv.exchanges[index].client_closed


async def test_errors_before_output_are_retried_honouring_retry_after(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    srv.enqueue([http_error(429)])  # retry-after: 1
    srv.enqueue([http_error(529)])  # retry-after: 1
    srv.enqueue(text_reply(["third ", "time ", "lucky"], input_tokens=9, output_tokens=3))
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="retry me")
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish",
        ]
        assert typed[-1].json()["messageMetadata"]["usage"] == Usage(9, 3).ai_sdk()
        st = await status(client, stack.url, gid)
        assert st["status"] == "completed"
        assert st["text"] == "third time lucky"
        assert st["error"] is None
    exchanges = srv.exchanges[first:]
    assert len(exchanges) == 3
    assert all(e.body["messages"][0]["content"][0]["text"] == "retry me" for e in exchanges)
    # retry-after: 1 was honoured each time (the worker's own backoff here is 0.05 s)
    assert exchanges[1].started_at - exchanges[0].started_at >= 0.9
    assert exchanges[2].started_at - exchanges[1].started_at >= 0.9


async def test_failure_after_output_ends_with_error(srv: FakeAnthropicServer, stack: Stack) -> None:
    reply = text_reply(["Par", "tial ", "answer"])
    # message_start, content_block_start and three deltas, then the API's mid-stream error
    srv.enqueue([*reply[:5], sse_error("overloaded_error", "Overloaded")])
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="fail late")
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-delta",
            "error",
        ]
        error_text = typed[-1].json()["errorText"]
        assert "overloaded" in error_text.lower()
        assert "Overloaded" in error_text
        st = await status(client, stack.url, gid)
        assert st["status"] == "failed"
        assert st["error"] == error_text
        assert st["text"] == "Partial answer"
        assert st["last_event_id"] == result.ids[-1]
    await asyncio.sleep(0.3)
    assert srv.request_count == first + 1  # output was shown: never retried


async def test_non_retryable_error_fails_at_once(srv: FakeAnthropicServer, stack: Stack) -> None:
    problem = "max_tokens: 321 > 8192, which is the maximum allowed for this model"
    srv.enqueue(
        [
            http_error(
                400,
                {"type": "error", "error": {"type": "invalid_request_error", "message": problem}},
            )
        ]
    )
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="bad request")
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == ["error"]
        error_text = typed[0].json()["errorText"]
        assert problem in error_text
        assert "invalid_request_error" in error_text
        assert "400" in error_text
        st = await status(client, stack.url, gid)
        assert st["status"] == "failed"
        assert st["error"] == error_text
        assert st["text"] == ""
        assert st["usage"] is None
    await asyncio.sleep(0.3)
    assert srv.request_count == first + 1


async def test_a_stall_mid_stream_times_out_and_the_worker_goes_on(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    reply = text_reply(["Hello", " wor"])
    srv.enqueue([*reply[:4], stall()])  # output, then nothing (read timeout: 1 s)
    srv.enqueue(text_reply(["next ", "one"]))
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="stall")
        viewer = LiveViewer()
        await asyncio.wait_for(viewer.run(client, f"{stack.url}/v1/streams/{gid}/events"), 10)
        result = SSEResult(200, httpx.Headers(), events=viewer.events)
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "error",
        ]
        assert "timed out" in typed[-1].json()["errorText"]
        st = await status(client, stack.url, gid)
        assert st["status"] == "failed"
        assert "timed out" in st["error"]
        assert st["text"] == "Hello wor"
        assert await asyncio.to_thread(srv.wait_client_closed, first, 3)

        gid2 = await create(client, stack.url, prompt="after the stall")
        result2 = await read_sse(client, f"{stack.url}/v1/streams/{gid2}/events")
        typed2 = assert_well_formed(result2)
        assert typed2[-1].event == "finish"
        assert (await status(client, stack.url, gid2))["text"] == "next one"
    assert srv.request_count == first + 2


async def test_connection_refused_fails_with_a_clear_error(base_dir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    own = start_stack(base_dir, "refused", anthropic_env(closed, WORKER_PROVIDER_RETRIES="1"))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gid = await create(client, own.url, prompt="anyone there?")
            result = await read_sse(client, f"{own.url}/v1/streams/{gid}/events")
            typed = assert_well_formed(result)
            assert [e.event for e in typed] == ["error"]
            error_text = typed[0].json()["errorText"]
            assert error_text.startswith("cannot reach the model provider")
            st = await status(client, own.url, gid)
            assert st["status"] == "failed"
            assert st["error"] == error_text
        log = own.worker.log()
        assert "retry 1" in log  # one retry, then the error
        assert "Traceback" not in log
    finally:
        own.stop()
