"""Prompt caching and usage end to end, with the real ``anthropic`` and ``openai`` SDKs
in the worker against the local servers, which bill each request's cache reads and
writes as the APIs do (tests/support/prompt_cache.py) and report reasoning tokens.

- Over a 20-turn chat, each request's breakpoints, turn by turn: the system prompt, the
  last turn before the new message and the new message; each turn reads the whole
  prompt the turn before it sent. Across a takeover, the continuation keeps the cut
  call's prefix and reads it.
- A generation's usage, the same in every place it is reported: the ``finish`` event
  (the AI SDK's shape: ``inputTokens`` the uncached, read and written input), the
  generation's status and webhook (snake_case), AG-UI's ``RUN_FINISHED``, the user's
  day (``GET /v1/usage``) and the Prometheus counter.
- OpenAI: the chat's id as ``prompt_cache_key``, cache reads and reasoning tokens in the
  usage, on Chat Completions and on the Responses API.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.auth import credentials
from broadcaster.core.events import Usage
from tests.support import cached_chat, fake_openai, fake_openai_responses
from tests.support.cached_chat import SYSTEM, answer_words, question
from tests.support.fake_anthropic import text_reply
from tests.support.polling import poll
from tests.support.procs import ROOT, parse_sse, read_sse
from tests.support.prompt_cache import AnthropicCache, Bill, OpenAICache, breakpoints
from tests.support.stacks import Stack, anthropic_stack
from tests.support.usage_calls import bearer, finished, key_name
from tests.support.webhooks import Receiver, webhook_env

pytestmark = pytest.mark.anyio

ADMIN = "adm-" + secrets.token_hex(8)
KEY = "gen-" + secrets.token_hex(8)
KEYS = f"{credentials.hash_key(ADMIN)}:admin,{credentials.hash_key(KEY)}"
TURNS = 20


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def oai() -> Iterator[fake_openai.FakeOpenAIServer]:
    with fake_openai.FakeOpenAIServer(api_key="test", cache=OpenAICache()) as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def responses() -> Iterator[fake_openai_responses.FakeResponsesServer]:
    with fake_openai_responses.FakeResponsesServer(api_key="test", cache=OpenAICache()) as s:
        yield s
    assert s.errors == []


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    receiver: Receiver,
    oai: fake_openai.FakeOpenAIServer,
) -> Iterator[Stack]:
    worker = {
        "WORKER_PROVIDERS": "anthropic,openai",
        "OPENAI_BASE_URL": oai.base_url,
        "OPENAI_API_KEY": "test",
        "WORKER_LEASE_SECONDS": "1",
        "WORKER_MERGE_MS": "0",
        "PYTHONPATH": str(ROOT),
    }
    front = webhook_env(
        receiver.url(),
        BROADCASTER_API_KEYS=KEYS,
        BROADCASTER_RATE_LIMIT_PER_MINUTE="0",
        BROADCASTER_SUBMIT_RATE_PER_MINUTE="0",
    )
    with anthropic_stack(tmp_path_factory.mktemp("caching"), worker, front) as s:
        s.model.cache = AnthropicCache()
        yield s


def submit(stack: Stack, chat: str, messages: list[dict[str, Any]], **extra: Any) -> str:
    return cached_chat.submit(stack, chat, messages, bearer(KEY), **extra)


def history(stack: Stack, chat: str) -> list[dict[str, Any]]:
    return cached_chat.history(stack, chat, bearer(KEY))


def finish_usage(stack: Stack, gid: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/v1/streams/{gid}/events", timeout=30)
    events, _, _ = parse_sse(r.content)
    [finish] = [e.json() for e in events if e.event == "finish"]
    usage: dict[str, Any] = finish["messageMetadata"]["usage"]
    return usage


def billed(bill: Bill, output: int) -> Usage:
    """What a call billed ``bill`` reports, as the usage's one shape counts it."""
    return Usage(bill.total, output, cache_read=bill.cache_read, cache_write=bill.cache_write)


def test_a_20_turn_chat_reads_each_turn_what_the_one_before_wrote(stack: Stack) -> None:
    chat = "cache-" + secrets.token_hex(6)
    messages: list[dict[str, Any]] = []
    first = stack.model.request_count
    for n in range(1, TURNS + 1):
        stack.model.enqueue(text_reply(answer_words(n), output_tokens=40))
        messages = [*messages, question(n)]
        gid = submit(stack, chat, messages)
        exchange = stack.model.exchanges[first + n - 1]
        sent = exchange.body
        last = len(sent["messages"]) - 1
        expected = ["system[0]", f"messages[{last}].content[0]"]
        if n > 1:
            expected.insert(1, f"messages[{last - 1}].content[0]")
        assert breakpoints(sent) == expected, (n, breakpoints(sent))
        if n > 1:
            before = stack.model.exchanges[first + n - 2].bill
            # The whole prompt the turn before sent is read; only the new turn is written.
            assert exchange.bill.cache_read == before.total, n
            assert exchange.bill.plain == 0, n
        assert finish_usage(stack, gid) == billed(exchange.bill, 40).ai_sdk(), n
        messages = history(stack, chat)
    bills = [e.bill for e in stack.model.exchanges[first : first + TURNS]]
    assert sum(b.cache_read for b in bills) > 0.8 * sum(b.total for b in bills)


def test_a_continuation_after_a_takeover_reads_the_cut_call_s_prompt(stack: Stack) -> None:
    chat = "cut-" + secrets.token_hex(6)
    stack.model.enqueue(text_reply(answer_words(1)))
    submit(stack, chat, [question(1)])
    messages = [*history(stack, chat), question(2)]
    first = stack.model.request_count
    cached_chat.taken_over(stack, chat, messages, answer_words(2), bearer(KEY))
    cut, going_on = stack.model.exchanges[first], stack.model.exchanges[first + 1]
    sent = going_on.body["messages"]
    assert [b for b in breakpoints(going_on.body) if b.startswith("messages")] == [
        f"messages[{len(sent) - 2}].content[0]",
        f"messages[{len(sent) - 1}].content[0]",
    ]
    # Its prompt is the cut call's and the partial answer: the cut call's is read whole.
    assert going_on.bill.cache_read == cut.bill.total
    assert going_on.bill.plain == 0


async def test_a_generation_s_usage_is_the_same_everywhere(
    stack: Stack, receiver: Receiver
) -> None:
    stack.model.enqueue(text_reply(["Four ", "words ", "of ", "answer."], output_tokens=17))
    request = {"prompt": "How are usage counts kept?", "system": SYSTEM, "max_tokens": 200}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        first = stack.model.request_count
        r = await client.post("/v1/generations", json=request, headers=bearer(KEY))
        assert r.status_code == 202, r.text
        gid = r.json()["id"]
        stream = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        bill = stack.model.exchanges[first].bill
        used = billed(bill, 17)
        assert bill.cache_write > 0  # the system prompt and the question, written
        [finish] = [e.json() for e in stream.typed() if e.event == "finish"]
        assert finish["messageMetadata"]["usage"] == used.ai_sdk()
        status = (await client.get(f"/v1/generations/{gid}")).json()
        assert status["usage"] == used.snake()

        hooked = await poll(partial(finished, receiver, gid), "the webhook")
        assert hooked["usage"] == used.snake()
        agui = await read_sse(client, f"{stack.url}/v1/agui/generations/{gid}/events")
        [run_finished] = [e.json() for e in agui.events if '"RUN_FINISHED"' in e.data]
        assert run_finished["usage"] == [
            {
                "model": status["model"],
                "inputTokens": used.input,
                "outputTokens": used.output,
                "totalTokens": used.total,
                "cachedInputTokens": used.cache_read,
                "cacheWriteInputTokens": used.cache_write,
                "reasoningTokens": 0,
            }
        ]
        user = key_name(KEY)

        async def day() -> dict[str, Any] | None:
            r = await client.get("/v1/usage", params={"user": user}, headers=bearer(ADMIN))
            models = r.json()["days"][-1]["models"]
            return next((m for m in models if m["model"] == status["model"]), None)

        counted = await poll(day, "the user's day")
        assert counted["cache_write_tokens"] >= used.cache_write
        text = (await client.get("/metrics")).text
    samples = {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "broadcaster_tokens"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["model"] == status["model"]
    }
    assert samples["cache_write_tokens"] >= used.cache_write > 0


def test_openai_names_the_chat_s_cache_and_reports_reads_and_reasoning(
    stack: Stack, oai: fake_openai.FakeOpenAIServer
) -> None:
    chat = "oai-" + secrets.token_hex(6)
    first = oai.request_count
    for n in (1, 2):
        oai.enqueue(fake_openai.reply(reasoning=["Hm."], text=answer_words(n), reasoning_tokens=5))
        messages = [*(history(stack, chat) if n > 1 else []), question(n)]
        gid = submit(stack, chat, messages, provider="openai", model="gpt-x")
        exchange = oai.exchanges[first + n - 1]
        assert exchange.body["prompt_cache_key"] == chat
        usage = finish_usage(stack, gid)
        assert usage["inputTokens"] == exchange.bill.total
        assert usage["inputTokenDetails"]["cacheReadTokens"] == exchange.bill.cache_read
        assert usage["outputTokenDetails"]["reasoningTokens"] == 5
    assert oai.exchanges[first + 1].bill.cache_read > 0  # the second turn read the first's


def test_the_responses_api_names_the_chat_s_cache(
    tmp_path_factory: pytest.TempPathFactory,
    responses: fake_openai_responses.FakeResponsesServer,
) -> None:
    worker = {
        "WORKER_PROVIDER": "openai",
        "WORKER_OPENAI_API": "responses",
        "OPENAI_BASE_URL": responses.base_url,
        "OPENAI_API_KEY": "test",
        "WORKER_MERGE_MS": "0",
    }
    responses.set_default(fake_openai_responses.reply(reasoning=["a", "b"], text=["ok"]))
    chat = "resp-" + secrets.token_hex(6)
    with anthropic_stack(tmp_path_factory.mktemp("responses-cache"), worker) as s:
        for n in (1, 2):
            first = responses.request_count
            before = cached_chat.history(s, chat) if n > 1 else []
            messages = [*before, cached_chat.ui("user", f"{SYSTEM} {n}")]
            gid = cached_chat.submit(s, chat, messages, provider="openai", model="gpt-x")
            [created] = [e for e in responses.exchanges[first:] if e.method == "POST"]
            assert created.body["prompt_cache_key"] == chat
            usage = finish_usage(s, gid)
            assert usage["inputTokens"] == created.bill.total
            assert usage["inputTokenDetails"]["cacheReadTokens"] == created.bill.cache_read
            assert usage["outputTokenDetails"]["reasoningTokens"] == 2
        assert created.bill.cache_read > 0  # the second turn read the first's prompt


def _ended(stack: Stack, gid: str) -> bool:
    r = httpx.get(f"{stack.url}/v1/generations/{gid}", timeout=10)
    return r.status_code == 200 and r.json()["status"] in ("completed", "failed")
