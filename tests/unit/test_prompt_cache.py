"""The local model servers' prompt caches, and the usage they report through the real
``anthropic`` and ``openai`` SDKs: cache reads and writes as the APIs bill them, and
reasoning tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.support import fake_openai, fake_openai_responses
from tests.support.fake_anthropic import FakeAnthropicServer, text_reply
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.fake_openai_responses import FakeResponsesServer
from tests.support.prompt_cache import (
    AnthropicCache,
    Bill,
    OpenAICache,
    Prices,
    breakpoints,
    count_tokens,
)

pytestmark = pytest.mark.anyio

CC = {"type": "ephemeral"}
LONG = "word " * 1200  # about 1,500 tokens: over the minimum a prefix must have


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _turn(role: str, text: str, mark: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if mark:
        block["cache_control"] = CC
    return {"role": role, "content": [block]}


def test_a_chat_reads_what_its_previous_turn_wrote() -> None:
    cache = AnthropicCache()
    system = [{"type": "text", "text": LONG, "cache_control": CC}]
    first = {"system": system, "messages": [_turn("user", "one", mark=True)]}
    bill = cache.bill(first)
    assert bill.cache_read == 0 and bill.cache_write == bill.total > 1024
    second = {
        "system": system,
        "messages": [_turn("user", "one"), _turn("assistant", "ans"), _turn("user", "two", True)],
    }
    again = cache.bill(second)
    assert again.cache_read == bill.total
    assert again.cache_write == again.total - bill.total and again.plain == 0


def test_what_follows_the_last_breakpoint_is_plain_input() -> None:
    cache = AnthropicCache()
    body = {"system": [{"type": "text", "text": LONG, "cache_control": CC}]}
    body["messages"] = [_turn("user", "a question")]
    bill = cache.bill(body)
    assert bill.plain == count_tokens({"type": "text", "text": "a question"})
    assert cache.bill(body) == Bill(bill.plain, bill.cache_write, 0)


def test_no_breakpoint_no_cache_and_a_short_prefix_is_not_kept() -> None:
    cache = AnthropicCache()
    plain = {"messages": [_turn("user", LONG)]}
    assert cache.bill(plain).plain == cache.bill(plain).total
    short = {"messages": [_turn("user", "short", mark=True)]}
    assert cache.bill(short) == cache.bill(short) == Bill(cache.bill(short).total, 0, 0)


def test_an_entry_expires_and_a_read_keeps_it() -> None:
    now = [0.0]
    cache = AnthropicCache(ttl=300, clock=lambda: now[0])
    body = {"messages": [_turn("user", LONG, mark=True)]}
    written = cache.bill(body).cache_write
    now[0] = 299
    assert cache.bill(body).cache_read == written
    now[0] = 598  # 299 s after the read, which refreshed it
    assert cache.bill(body).cache_read == written
    now[0] = 1000
    assert cache.bill(body).cache_write == written


@pytest.mark.parametrize(("between", "read"), [(19, True), (20, False)])
def test_the_lookback_reaches_twenty_blocks_back(between: int, read: bool) -> None:
    cache = AnthropicCache()
    written = cache.bill({"messages": [_turn("user", LONG, mark=True)]}).cache_write
    tail = [_turn("assistant" if i % 2 == 0 else "user", f"t{i}") for i in range(between)]
    later = {"messages": [_turn("user", LONG), *tail, _turn("user", "end", True)]}
    assert cache.bill(later).cache_read == (written if read else 0)


def test_more_than_four_breakpoints_are_refused() -> None:
    body = {"messages": [_turn("user", f"m{i}", mark=True) for i in range(5)]}
    assert len(breakpoints(body)) == 5
    with pytest.raises(ValueError, match="A maximum of 4"):
        AnthropicCache().bill(body)


def test_openai_reads_the_common_prefix_in_steps_under_one_key() -> None:
    cache = OpenAICache()
    history = [{"role": "user", "content": LONG}, {"role": "assistant", "content": "ok"}]
    first = cache.bill(history, "chat-1")
    assert first.cache_read == 0
    second = cache.bill([*history, {"role": "user", "content": "more"}], "chat-1")
    assert second.cache_read == first.total // 128 * 128 and second.cache_read % 128 == 0
    assert cache.bill(history, "chat-2").cache_read == 0


def test_anthropic_prices() -> None:
    assert Prices().cost(Bill(100, 1000, 40)) == pytest.approx(100 + 100 + 50)


# ---- the servers, through the SDKs


@pytest.fixture
def anthropic_srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(cache=AnthropicCache()) as server:
        yield server
    assert server.errors == []


async def test_anthropic_reports_the_cache_through_the_sdk(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    import anthropic

    system = [{"type": "text", "text": LONG, "cache_control": CC}]
    async with anthropic.AsyncAnthropic(
        base_url=anthropic_srv.base_url, api_key="k", max_retries=0
    ) as client:
        usages = []
        for question in ("one", "two"):
            with anyio.fail_after(10):
                async with client.messages.stream(
                    model="m",
                    max_tokens=10,
                    system=system,  # type: ignore[arg-type]
                    messages=[{"role": "user", "content": question}],
                ) as stream:
                    usages.append((await stream.get_final_message()).usage)
    first, second = usages
    assert first.cache_creation_input_tokens > 1024 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0 and second.input_tokens > 0
    bills = [e.bill for e in anthropic_srv.exchanges]
    assert bills[1].cache_read == second.cache_read_input_tokens
    assert breakpoints(anthropic_srv.requests[1].body) == ["system[0]"]


async def test_anthropic_scripts_say_their_own_cache_counts(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    import anthropic

    anthropic_srv.cache = None
    anthropic_srv.enqueue(
        text_reply(["a"], input_tokens=5, cache_read_input_tokens=70, cache_creation_input_tokens=9)
    )
    async with (
        anthropic.AsyncAnthropic(
            base_url=anthropic_srv.base_url, api_key="k", max_retries=0
        ) as client,
        client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "q"}]
        ) as stream,
    ):
        usage = (await stream.get_final_message()).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (5, 70)
    assert usage.cache_creation_input_tokens == 9


async def test_anthropic_refuses_five_breakpoints(anthropic_srv: FakeAnthropicServer) -> None:
    import anthropic

    messages: Any = [_turn("user", f"m{i}", mark=True) for i in range(5)]
    async with anthropic.AsyncAnthropic(
        base_url=anthropic_srv.base_url, api_key="k", max_retries=0
    ) as client:
        with pytest.raises(anthropic.BadRequestError, match="A maximum of 4"):
            async with client.messages.stream(model="m", max_tokens=10, messages=messages) as s:
                await s.get_final_message()


async def test_chat_completions_report_cache_and_reasoning_through_the_sdk() -> None:
    import openai

    with FakeOpenAIServer(cache=OpenAICache()) as srv:
        srv.enqueue(fake_openai.reply(reasoning=["hm", "m"], text=["ok"]))
        srv.enqueue(fake_openai.reply(text=["ok"], reasoning_tokens=7))
        messages: Any = [{"role": "user", "content": LONG}]
        usages = []
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as c:
            for _ in range(2):
                stream = await c.chat.completions.create(
                    model="m",
                    messages=messages,
                    stream=True,
                    prompt_cache_key="chat-9",
                    stream_options={"include_usage": True},
                )
                usages += [ch.usage async for ch in stream if ch.usage is not None]
        assert srv.errors == []
    first, second = usages
    assert first.prompt_tokens_details.cached_tokens == 0
    assert first.completion_tokens_details.reasoning_tokens == 2
    assert second.prompt_tokens_details.cached_tokens == first.prompt_tokens // 128 * 128
    assert second.completion_tokens_details.reasoning_tokens == 7
    assert [r.body["prompt_cache_key"] for r in srv.requests] == ["chat-9", "chat-9"]


async def test_responses_report_cache_and_reasoning_through_the_sdk() -> None:
    import openai

    with FakeResponsesServer(cache=OpenAICache()) as srv:
        srv.set_default(fake_openai_responses.reply(reasoning=["a", "b", "c"], text=["ok"]))
        usages = []
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as c:
            for _ in range(2):
                stream = await c.responses.create(
                    model="m",
                    input=[{"role": "user", "content": LONG}],
                    stream=True,
                    background=True,
                    store=True,
                    prompt_cache_key="gen-1",
                )
                usages += [e.response.usage async for e in stream if e.type == "response.completed"]
        assert srv.errors == []
    first, second = usages
    assert first.input_tokens_details.cached_tokens == 0
    assert second.input_tokens_details.cached_tokens == first.input_tokens // 128 * 128 > 0
    assert second.output_tokens_details.reasoning_tokens == 3
