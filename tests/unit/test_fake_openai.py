"""The fake OpenAI server, driven by the real ``openai`` SDK: the chunks it sees, and the
requests it refuses as the real API does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.support.fake_openai import FakeOpenAIServer, reply, stream_error, whole_call

if TYPE_CHECKING:
    import openai

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server
    assert server.errors == []


@pytest.fixture
async def client(srv: FakeOpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    import openai

    async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as c:
        yield c


async def chunks(client: openai.AsyncOpenAI, messages: list[Any]) -> list[dict[str, Any]]:
    with anyio.fail_after(10):
        stream = await client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        return [c.model_dump(mode="json", exclude_none=True) async for c in stream]


async def test_an_ollama_reply_as_the_sdk_sees_it(
    srv: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    srv.enqueue(
        reply(
            reasoning=["hm"], reasoning_field="reasoning", tools=[whole_call("c1", "f", {"a": 1})]
        )
    )
    got = await chunks(client, [{"role": "user", "content": "hi"}])
    deltas = [c["choices"][0]["delta"] for c in got if c["choices"]]
    assert deltas[1] == {"reasoning": "hm"}
    assert deltas[2]["tool_calls"] == [
        {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a": 1}'},
        }
    ]
    assert got[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert got[-1]["usage"]["prompt_tokens"] == 12
    assert srv.requests[0].body["stream_options"] == {"include_usage": True}


async def test_a_mid_stream_error_raises_a_plain_api_error(
    srv: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    import openai

    srv.enqueue([*reply(text=["a"])[:2], stream_error("boom")])
    with pytest.raises(openai.APIError) as info:
        await chunks(client, [{"role": "user", "content": "hi"}])
    assert not isinstance(info.value, openai.APIStatusError)
    assert info.value.message == "boom"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "x", "content": "r"}],
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "user", "content": "no tool message"},
        ],
    ],
    ids=["result-without-call", "call-without-result"],
)
async def test_tool_messages_that_answer_nothing_are_refused(
    client: openai.AsyncOpenAI, messages: list[Any]
) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="tool"):
        await chunks(client, messages)
