"""A chat answer holding every part type, published into its generation's log as a
producer would (no worker: the test is the producer), read live by the AI SDK's own
client (``tests/clients/aisdk/chat.mjs``: the submit's answer, and a tab that resumes
midway), then reloaded from ``GET /v1/chat/{id}/messages``: the reload shows the very
message the live tabs built, part for part.

Real processes: a Redis server of the test's own and a front-end. Needs node >= 20 and
the npm packages of tests/clients/aisdk; without them the test fails and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from broadcaster.core.eventlog import UNCLAIMED, EventLog
from tests.support.aisdk import missing_prerequisites, node, result, user
from tests.support.polling import wait_for
from tests.support.stacks import Stack, start_stack

META = {"anthropic": {"citedText": "Paris is the capital"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the test needs:\n  " + "\n  ".join(missing), pytrace=False)
    s = start_stack(tmp_path_factory.mktemp("every-part"), "every-part", None)
    try:
        yield s
    finally:
        s.stop()


def every_part(message_id: str) -> list[dict[str, Any]]:
    """One answer with each part type the AI SDK 6 reads, in two steps."""
    return [
        {"type": "start", "messageId": message_id, "messageMetadata": {"model": "m"}},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0", "providerMetadata": {"anthropic": {}}},
        {"type": "reasoning-delta", "id": "r0", "delta": "Looking it up."},
        {
            "type": "reasoning-end",
            "id": "r0",
            "providerMetadata": {"anthropic": {"signature": "s"}},
        },
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "Paris"},
        {"type": "text-end", "id": "t0"},
        {"type": "source-url", "sourceId": "s1", "url": "https://a.example/", "title": "A"},
        {
            "type": "source-document",
            "sourceId": "s2",
            "mediaType": "text/plain",
            "title": "Atlas",
            "filename": "atlas.txt",
            "providerMetadata": META,
        },
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="},
        {"type": "data-weather", "id": "w", "data": {"c": 21}},
        {"type": "data-weather", "id": "w", "data": {"c": 22}},
        {"type": "data-progress", "data": 0.5, "transient": True},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "lookup", "title": "Look"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"q": "Par'},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": 'is"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "lookup",
            "input": {"q": "Paris"},
            "providerMetadata": META,
        },
        {"type": "tool-output-available", "toolCallId": "c1", "output": {"found": 1}},
        {
            "type": "tool-input-available",
            "toolCallId": "c2",
            "toolName": "mcp_read",
            "dynamic": True,
            "title": "Read",
            "input": {},
        },
        {"type": "tool-output-error", "toolCallId": "c2", "errorText": "denied by the server"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "message-metadata", "messageMetadata": {"usage": {"inputTokens": 3}}},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "It is Paris."},
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
    ]


async def publish(redis_url: str, generation: str, events: list[dict[str, Any]]) -> None:
    redis = Redis.from_url(redis_url)
    try:
        log = EventLog(redis)
        for event in events:  # one at a time, as a producer streams them
            await log.append(generation, [event], kind="generation", owner=UNCLAIMED)
    finally:
        await redis.aclose()


def test_the_reload_shows_every_part_the_live_tabs_built(stack: Stack) -> None:
    chat = "every-part"
    request = {"api": stack.api, "chatId": chat, "messages": [user("Where?")]}
    sender = node("send", request)
    messages = f"{stack.api}/{chat}/messages"
    wait_for("the chat's generation", lambda: httpx.get(messages).status_code == 200)
    generation = httpx.get(messages).json()["generation_id"]
    events = every_part(generation)
    asyncio.run(publish(stack.redis.url, generation, events[:12]))
    resumer = node("resume", request)  # a second tab, halfway through
    wait_for("the second tab", lambda: httpx.get(f"{stack.url}/readyz").json()["viewers"] == 2)
    asyncio.run(publish(stack.redis.url, generation, [*events[12:], {"type": "finish"}]))
    sent, resumed = result(sender, stack), result(resumer, stack)
    reloaded = httpx.get(messages).json()["messages"]
    assert reloaded == [user("Where?"), sent["message"]]
    assert resumed["message"] == sent["message"]
    kinds = [p["type"] for p in sent["message"]["parts"]]
    assert kinds == [
        "step-start",
        "reasoning",
        "text",
        "source-url",
        "source-document",
        "file",
        "data-weather",
        "tool-lookup",
        "dynamic-tool",
        "step-start",
        "text",
    ]
    assert sent["message"]["metadata"] == {"model": "m", "usage": {"inputTokens": 3}}
