"""The fake Anthropic server, driven by the real ``anthropic`` SDK: what the SDK sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import pytest

from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    delay,
    drop,
    http_error,
    message,
    ping,
    sse_error,
    stall,
    text,
    text_reply,
    thinking,
    tool_use,
)

if TYPE_CHECKING:
    import anthropic

pytestmark = pytest.mark.anyio

MESSAGES: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server
    assert server.errors == []


@pytest.fixture
async def client(srv: FakeAnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    import anthropic

    async with anthropic.AsyncAnthropic(
        base_url=srv.base_url, api_key="test", max_retries=0, timeout=10
    ) as c:
        yield c


async def collect(
    client: anthropic.AsyncAnthropic, **kwargs: Any
) -> tuple[list[Any], anthropic.types.Message]:
    """Every event the stream helper yields, and the final message."""
    params: dict[str, Any] = {"model": "claude-test", "max_tokens": 100, "messages": MESSAGES}
    params.update(kwargs)
    with anyio.fail_after(10):
        async with client.messages.stream(**params) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_message()
    return events, final


def deltas(events: list[Any], delta_type: str) -> list[dict[str, Any]]:
    return [
        e.delta.model_dump()
        for e in events
        if e.type == "content_block_delta" and e.delta.type == delta_type
    ]


async def test_text_reply_text_deltas_usage_stop_reason_and_request_record(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    srv.enqueue(
        text_reply(["Hel", "lo", " world"], input_tokens=7, output_tokens=3, model="claude-x")
    )

    events, final = await collect(client, system="be brief")

    assert [d["text"] for d in deltas(events, "text_delta")] == ["Hel", "lo", " world"]
    assert [e.type for e in events if e.type.startswith("message")] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello world"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)
    assert final.stop_reason == "end_turn"
    assert final.model == "claude-x"
    assert final.id.startswith("msg_")

    assert srv.request_count == 1
    headers, body = srv.requests[0]
    assert headers["authorization"] == "Bearer test"
    assert "anthropic-version" in headers
    assert body == {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": MESSAGES,
        "system": "be brief",
        "stream": True,
    }
    assert srv.exchanges[0].path == "/v1/messages"
    assert srv.wait_completed(0, 1)
    assert not srv.exchanges[0].client_closed


async def test_default_script_echoes_the_requested_model(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    _, final = await collect(client, model="claude-echo")

    assert final.model == "claude-echo"
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello from the fake model."
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 12
    assert final.usage.output_tokens == 4  # one per delta by default


async def test_thinking_text_and_tool_use_blocks(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    srv.enqueue(
        message(
            [
                thinking(["Let me", " think."], signature="sig_123"),
                text("Checking."),
                tool_use("toolu_9", "get_weather", ["", '{"city": ', '"Paris"}']),
            ],
            input_tokens=30,
            output_tokens=25,
            stop_reason="tool_use",
        )
    )

    events, final = await collect(client)

    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert [d["thinking"] for d in deltas(events, "thinking_delta")] == ["Let me", " think."]
    assert [d["signature"] for d in deltas(events, "signature_delta")] == ["sig_123"]
    assert [d["text"] for d in deltas(events, "text_delta")] == ["Checking."]
    assert [d["partial_json"] for d in deltas(events, "input_json_delta")] == [
        "",
        '{"city": ',
        '"Paris"}',
    ]
    block_indexes = [e.index for e in events if e.type == "content_block_delta"]
    assert block_indexes == [0, 0, 0, 1, 2, 2, 2]

    thought, said, call = final.content
    assert thought.type == "thinking"
    assert (thought.thinking, thought.signature) == ("Let me think.", "sig_123")
    assert said.type == "text"
    assert said.text == "Checking."
    assert call.type == "tool_use"
    assert (call.id, call.name, call.input) == ("toolu_9", "get_weather", {"city": "Paris"})
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 25)


async def test_ping_frames_are_skipped_by_the_sdk(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    script = text_reply(["a", "b"])
    script = [ping(), *script[:3], ping(), ping(), *script[3:], ping()]
    srv.enqueue(script)

    events, final = await collect(client)

    assert "ping" not in {e.type for e in events}
    assert [d["text"] for d in deltas(events, "text_delta")] == ["a", "b"]
    assert final.content[0].type == "text"
    assert final.content[0].text == "ab"
    assert srv.exchanges[0].frames_sent == len(script)


async def test_sse_error_mid_stream_raises_api_status_error(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    import anthropic

    srv.enqueue([*text_reply(["partial", "never"])[:3], sse_error("overloaded_error", "Busy")])
    seen: list[str] = []

    with anyio.fail_after(10), pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    seen.append(event.delta.text)

    err = info.value
    assert seen == ["partial"]
    # The HTTP status was 200: the SDK raises the base class, never OverloadedError, and
    # carries the error frame's JSON as the body.
    assert type(err) is anthropic.APIStatusError
    assert err.status_code == 200
    assert err.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}
    assert err.type == "overloaded_error"
    assert err.api_message == "Busy"
    assert srv.request_count == 1  # not retried


async def test_429_raises_rate_limit_error_with_retry_after(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    import anthropic

    srv.enqueue([http_error(429, headers={"retry-after": "7"})])

    with pytest.raises(anthropic.RateLimitError) as info:
        await collect(client)

    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "7"
    assert err.type == "rate_limit_error"
    assert srv.request_count == 1


async def test_529_raises_overloaded_error(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    import anthropic

    srv.enqueue([http_error(529)])

    with pytest.raises(anthropic.OverloadedError) as info:
        await collect(client)

    assert isinstance(info.value, anthropic.InternalServerError)
    assert info.value.status_code == 529
    assert info.value.type == "overloaded_error"
    assert info.value.response.headers["retry-after"] == "1"


async def test_500_raises_internal_server_error(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    import anthropic

    srv.enqueue([http_error(500)])

    with pytest.raises(anthropic.InternalServerError) as info:
        await collect(client)

    assert info.value.status_code == 500
    assert info.value.type == "api_error"


async def test_sdk_retries_a_429_itself_when_allowed(srv: FakeAnthropicServer) -> None:
    import anthropic

    srv.enqueue([http_error(429, headers={"retry-after-ms": "50"})])
    srv.enqueue(text_reply(["second", " try"]))

    async with anthropic.AsyncAnthropic(
        base_url=srv.base_url, api_key="test", max_retries=1
    ) as retrying:
        _, final = await collect(retrying)

    assert final.content[0].type == "text"
    assert final.content[0].text == "second try"
    assert srv.request_count == 2
    assert [h["x-stainless-retry-count"] for h, _ in srv.requests] == ["0", "1"]


async def test_stall_mid_stream_surfaces_as_httpx2_read_timeout(
    srv: FakeAnthropicServer,
) -> None:
    import anthropic

    srv.enqueue([*text_reply(["before"])[:3], stall()])
    seen: list[str] = []

    async with anthropic.AsyncAnthropic(
        base_url=srv.base_url, api_key="test", max_retries=0, timeout=2.0
    ) as impatient:
        # 2 s, not less: on a loaded machine the headers themselves can take longer than a
        # short timeout, and that is the other error (the request's, not the body's).
        with anyio.fail_after(15), pytest.raises(httpx2.ReadTimeout):
            async with impatient.messages.stream(
                model="m", max_tokens=10, messages=MESSAGES
            ) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        seen.append(event.delta.text)

    assert seen == ["before"]
    # Not wrapped in anthropic.APITimeoutError: the SDK only wraps errors of the request
    # itself, not of reading the body. And the SDK closes the response on the way out.
    assert await anyio.to_thread.run_sync(srv.wait_client_closed, 0, 5)
    assert not srv.exchanges[0].completed


async def test_stall_before_headers_surfaces_as_api_timeout_error(
    srv: FakeAnthropicServer,
) -> None:
    import anthropic

    srv.enqueue([stall(send_headers=False)])

    async with anthropic.AsyncAnthropic(
        base_url=srv.base_url, api_key="test", max_retries=0, timeout=0.3
    ) as impatient:
        with anyio.fail_after(10), pytest.raises(anthropic.APITimeoutError):
            await collect(impatient)

    assert await anyio.to_thread.run_sync(srv.wait_client_closed, 0, 5)


async def test_closing_the_stream_early_is_seen_as_a_client_disconnect(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    script = text_reply(["tick"] * 50, chunk_delay=0.05)
    srv.enqueue(script)

    with anyio.fail_after(10):
        async with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break

    assert await anyio.to_thread.run_sync(srv.wait_client_closed, 0, 5)
    exchange = srv.exchanges[0]
    assert not exchange.completed
    assert exchange.client_closed_at is not None
    assert exchange.client_closed_at > exchange.started_at
    assert exchange.frames_sent < len([s for s in script if s.__class__.__name__ == "Frame"])


async def test_cancelling_the_reading_task_closes_the_request(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    srv.enqueue([*text_reply(["first"])[:3], delay(30), *text_reply(["first"])[3:]])
    seen: list[str] = []
    first_delta = anyio.Event()

    async def consume() -> None:
        async with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    seen.append(event.delta.text)
                    first_delta.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await first_delta.wait()
            tg.cancel_scope.cancel()

    assert seen == ["first"]
    assert await anyio.to_thread.run_sync(srv.wait_client_closed, 0, 5)
    assert not srv.exchanges[0].completed


async def test_drop_mid_stream_raises_remote_protocol_error(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    srv.enqueue([*text_reply(["cut"])[:3], drop()])

    with pytest.raises(httpx2.RemoteProtocolError):
        await collect(client)


async def test_keep_alive_serves_requests_on_one_connection(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    import anthropic

    srv.enqueue(text_reply("one"))
    srv.enqueue([http_error(429)])
    srv.enqueue(text_reply("three"))

    _, first = await collect(client)
    with pytest.raises(anthropic.RateLimitError):
        await collect(client)
    _, third = await collect(client)
    _, fourth = await collect(client)  # queue empty: the default script

    texts = [m.content[0].text for m in (first, third, fourth) if m.content[0].type == "text"]
    assert texts == ["one", "three", "Hello from the fake model."]
    assert srv.request_count == 4
    assert srv.pending_scripts == 0
    assert {e.connection for e in srv.exchanges} == {1}


async def test_api_key_is_checked_when_configured() -> None:
    import anthropic

    with FakeAnthropicServer(api_key="secret") as srv:
        async with anthropic.AsyncAnthropic(
            base_url=srv.base_url, api_key="wrong", max_retries=0
        ) as wrong:
            with pytest.raises(anthropic.AuthenticationError):
                await collect(wrong)
        async with httpx2.AsyncClient(base_url=srv.base_url) as raw:
            response = await raw.post(
                "/v1/messages",
                headers={"x-api-key": "secret"},
                json={"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True},
            )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in response.text.split("\n\n") if f]
        assert frames[0].startswith("event: message_start\ndata: {")
        assert frames[-1] == 'event: message_stop\ndata: {"type":"message_stop"}'
        assert srv.request_count == 2


def test_a_client_in_another_process(srv: FakeAnthropicServer) -> None:
    srv.enqueue(text_reply(["from ", "afar"], input_tokens=3, output_tokens=2))
    program = textwrap.dedent(
        """
        import asyncio, json, anthropic

        async def main():
            async with anthropic.AsyncAnthropic(max_retries=0) as client:
                async with client.messages.stream(
                    model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                ) as stream:
                    final = await stream.get_final_message()
            print(json.dumps({"text": final.content[0].text, "usage": final.usage.to_dict()}))

        asyncio.run(main())
        """
    )
    env = {**os.environ, "ANTHROPIC_BASE_URL": srv.base_url, "ANTHROPIC_API_KEY": "k"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == "from afar"
    assert result["usage"]["input_tokens"] == 3
    assert result["usage"]["output_tokens"] == 2
    assert srv.requests[0].headers["authorization"] == "Bearer k"


async def test_stop_ends_a_stalled_stream_and_joins_the_thread() -> None:
    import anthropic

    srv = FakeAnthropicServer().start()
    srv.enqueue([*text_reply("x")[:3], stall()])
    try:
        async with anthropic.AsyncAnthropic(base_url=srv.base_url, api_key="t", max_retries=0) as c:
            with anyio.fail_after(10), pytest.raises(httpx2.RemoteProtocolError):
                async with c.messages.stream(model="m", max_tokens=5, messages=MESSAGES) as st:
                    async for event in st:
                        if event.type == "content_block_delta":
                            await anyio.to_thread.run_sync(srv.stop)
    finally:
        srv.stop()

    assert not any(t.name == "fake-anthropic" for t in threading.enumerate())
    assert not srv.exchanges[0].completed
    assert not srv.exchanges[0].client_closed  # the server left, not the client


def test_wait_requests_and_script_validation(srv: FakeAnthropicServer) -> None:
    assert srv.request_count == 0
    assert not srv.wait_requests(1, timeout=0.05)
    with pytest.raises(ValueError, match="first step"):
        srv.enqueue([ping(), http_error(500)])

    response = httpx2.post(
        f"{srv.base_url}/v1/messages",
        headers={"authorization": "Bearer t"},
        json={"model": "m", "max_tokens": 5, "messages": MESSAGES},
    )

    assert srv.wait_requests(1, timeout=1)
    assert response.status_code == 400  # only streaming requests are answered
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert httpx2.get(f"{srv.base_url}/v1/models").status_code == 404
    assert srv.request_count == 2


async def test_thinking_and_tool_turns_are_checked_as_the_api_checks_them(
    srv: FakeAnthropicServer, client: anthropic.AsyncAnthropic
) -> None:
    """A signature is accepted back only with the thinking it was issued for, and a
    tool_result only for a tool_use of the turn just before; then the reply plays."""
    import anthropic

    srv.enqueue(
        message(
            [
                thinking(["deep ", "thought"], signature="sig-issued"),
                tool_use("toolu_c", "f", ["{}"]),
            ],
            stop_reason="tool_use",
        )
    )
    _, final = await collect(client)
    turn = [block.model_dump(exclude_none=True) for block in final.content]
    turn[1].pop("caller", None)  # the SDK's model may fill it in; the fake sends none
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_c"}]}

    def turns(assistant: list[Any], result: dict[str, Any] = answer) -> list[Any]:
        return [*MESSAGES, {"role": "assistant", "content": assistant}, result]

    await collect(client, messages=turns(turn))  # accepted: the default reply plays
    forged = [{**turn[0], "thinking": "another thought"}, turn[1]]
    unsigned = [{**turn[0], "signature": ""}, turn[1]]
    unsigned_key = [{k: v for k, v in turn[0].items() if k != "signature"}, turn[1]]
    redacted = [{"type": "redacted_thinking", "data": "never-sent"}, *turn]
    stray = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}
    for messages, problem in (
        (turns(forged), "Invalid `signature`"),
        (turns(unsigned), "Invalid `signature`"),
        (turns(unsigned_key), "Invalid `signature`"),
        (turns(redacted), "Invalid `data`"),
        (turns([{"type": "text", "text": ""}, *turn]), "must be non-empty"),
        (turns(turn, stray), "unexpected `tool_use_id`"),
        (turns(turn, {"role": "user", "content": "no result"}), "without `tool_result`"),
    ):
        with pytest.raises(anthropic.BadRequestError, match=problem):
            await collect(client, messages=messages)
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        await collect(client, thinking={"type": "enabled", "budget_tokens": 100})
