"""Chat sessions on a real front-end and worker (fake provider), one stack for the
module: history read tail-first in pages, one stream per chat across its turns (and a
chat's answers on ``/v1/events?chat=``), and ``Idempotency-Key`` on the routes that
start something."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from broadcaster.generations.idempotency import Idempotency, body_hash
from tests.support.procs import SSEEvent, parse_sse
from tests.support.stacks import Stack, start_stack

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("sessions"), "sessions", {"WORKER_FAKE_DELAY_MS": "1"})
    yield s
    s.stop()


def user(text: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


def new_chat() -> str:
    return "chat-" + secrets.token_hex(6)


async def turn(
    client: httpx.AsyncClient, chat: str, text: str, mid: str, **headers: str
) -> httpx.Response:
    """One whole turn, as the AI SDK sends it: the chat so far, then the new message."""
    got = await client.get(f"/v1/chat/{chat}/messages")
    so_far = got.json()["messages"] if got.status_code == 200 else []
    body = {"id": chat, "messages": [*so_far, user(text, mid)], "max_tokens": 4}
    resp = await client.post("/v1/chat", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp


async def read_until(
    client: httpx.AsyncClient,
    url: str,
    enough: Callable[[list[SSEEvent]], bool],
    headers: dict[str, str] | None = None,
) -> list[SSEEvent]:
    """An SSE response that never ends by itself, read until ``enough`` of its events."""
    async with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == 200, await resp.aread()
        buf = b""
        async for chunk in resp.aiter_raw():
            buf += chunk
            events, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
            if enough(events):
                return events
    raise AssertionError(f"{url} ended before it said enough: {buf[-2000:]!r}")


def finishes(count: int) -> Callable[[list[SSEEvent]], bool]:
    return lambda events: sum(1 for e in events if e.data.startswith('{"type":"finish"')) >= count


def wrapped(count: int) -> Callable[[list[SSEEvent]], bool]:
    """``finishes`` on ``/v1/events``, whose frames wrap each event."""

    def enough(events: list[SSEEvent]) -> bool:
        kinds = [json.loads(e.data)["event"].get("type") for e in events]
        return kinds.count("finish") >= count

    return enough


# --- history, tail first ---


async def test_history_pages_cover_the_chat_once_newest_first(stack: Stack) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        for i in range(5):
            await turn(client, chat, f"question {i}", f"u{i}")
        whole = (await client.get(f"/v1/chat/{chat}/messages")).json()
        assert "older" not in whole  # without limit/before: the response of old
        ids = [m["id"] for m in whole["messages"]]
        assert len(ids) == 10 and len(set(ids)) == 10
        pages: list[list[dict[str, Any]]] = []
        before: str | None = None
        while True:
            query = {"limit": 3} | ({"before": before} if before else {})
            page = (await client.get(f"/v1/chat/{chat}/messages", params=query)).json()
            pages.append(page["messages"])
            before = page["older"]
            if before is None:
                break
        assert [len(p) for p in pages] == [3, 3, 3, 1]
        walked = [m for page in reversed(pages) for m in page]
        assert walked == whole["messages"]  # nothing repeated, nothing missing, in order
        assert pages[0][-1]["role"] == "assistant" and pages[0][-1]["parts"]
        for bad in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"before": "m" * 257}):
            resp = await client.get(f"/v1/chat/{chat}/messages", params=bad)
            assert resp.status_code == 422 and resp.json()["error"] == "invalid_request", bad
        resp = await client.get(f"/v1/chat/{chat}/messages", params={"before": "no-such"})
        assert resp.status_code == 400 and resp.json()["error"] == "bad_cursor"
        assert (await client.get(f"/v1/chat/{chat}/messages")).json() == whole


# --- one stream per chat ---


async def test_the_chat_stream_carries_every_turn_and_resumes_across_them(stack: Stack) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        first = await turn(client, chat, "first", "u0")
        follower = asyncio.create_task(read_until(client, f"/v1/chat/{chat}/events", finishes(3)))
        # The follower starts with the latest answer, then waits for the next turns,
        # which another client starts.
        second = await turn(client, chat, "second", "u1")
        third = await turn(client, chat, "third", "u2")
        events = await asyncio.wait_for(follower, 30)
    announced = [e.json()["data"] for e in events if '"data-chat-turn"' in e.data]
    generations = [r.headers["x-generation-id"] for r in (first, second, third)]
    assert [a["generationId"] for a in announced] == generations
    assert [a["turn"] for a in announced] == [1, 2, 3]
    assert [a["userMessage"]["id"] for a in announced] == ["u0", "u1", "u2"]
    assert all(e.id and e.id.split(":")[0] in "123" for e in events)
    assert not any(e.data == "[DONE]" for e in events)
    # Resumed from the last event of turn 2: turn 3 whole, and nothing of turns 1 and 2.
    last_of_second = [e.id for e in events if e.id and e.id.startswith("2:")][-1]
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        resumed = await read_until(
            client,
            f"/v1/chat/{chat}/events",
            finishes(1),
            headers={"last-event-id": last_of_second},
        )
        bad = await client.get(f"/v1/chat/{chat}/events", headers={"last-event-id": "x"})
    assert [e.id for e in resumed] == [e.id for e in events if e.id and e.id.startswith("3:")]
    assert [e.data for e in resumed] == [e.data for e in events if e.id and e.id[0] == "3"]
    assert bad.status_code == 400 and bad.json()["error"] == "bad_resume_point"


async def test_a_chats_answers_are_selected_on_the_dashboard_route(stack: Stack) -> None:
    chat, other = new_chat(), new_chat()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        # Streams that exist when it opens are listed, later ones announced: no race.
        watching = asyncio.create_task(read_until(client, f"/v1/events?chat={chat}", wrapped(2)))
        first = await turn(client, chat, "one", "u0")
        await turn(client, other, "not this one", "u0")
        second = await turn(client, chat, "two", "u1")
        events = await asyncio.wait_for(watching, 30)
    streams = {json.loads(e.data)["stream"] for e in events}
    assert streams == {first.headers["x-generation-id"], second.headers["x-generation-id"]}


# --- Idempotency-Key ---


async def test_a_retried_chat_submit_answers_the_first_ones_stream(stack: Stack) -> None:
    chat = new_chat()
    key = {"idempotency-key": secrets.token_hex(8)}
    body = {"id": chat, "messages": [user("hi", "u0")], "max_tokens": 4}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        first = await client.post("/v1/chat", json=body, headers=key)
        again = await client.post("/v1/chat", json=body, headers=key)
        other = await client.post("/v1/chat", json=body | {"max_tokens": 5}, headers=key)
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
        unkeyed = await client.post("/v1/chat", json=body | {"trigger": "submit-message"})
    assert first.status_code == again.status_code == 200
    assert again.headers["x-generation-id"] == first.headers["x-generation-id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert [e.data for e in parse_sse(again.content)[0]] == [
        e.data for e in parse_sse(first.content)[0]
    ]
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    # Nothing ran twice: one answer in the chat.
    assert [m["id"] for m in listed["messages"]] == ["u0", first.headers["x-generation-id"]]
    assert unkeyed.status_code == 200  # without the key: a new turn, as before
    assert unkeyed.headers["x-generation-id"] != first.headers["x-generation-id"]


async def test_a_retried_generation_and_publish_run_once(stack: Stack) -> None:
    key = {"idempotency-key": secrets.token_hex(8)}
    stream = "feed-" + secrets.token_hex(6)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        body = {"prompt": "hello", "max_tokens": 4}
        made = [await client.post("/v1/generations", json=body, headers=key) for _ in range(2)]
        changed = await client.post("/v1/generations", json=body | {"max_tokens": 3}, headers=key)
        event = {"type": "data-note", "data": {"n": 1}}
        url = f"/v1/streams/{stream}/events"
        published = [await client.post(url, json=event, headers=key) for _ in range(2)]
        second = await client.post(url, json=event, headers={"idempotency-key": "another"})
        too_long = await client.post(url, json=event, headers={"idempotency-key": "k" * 256})
    assert [r.status_code for r in made] == [202, 202]
    assert made[0].json() == made[1].json()
    assert changed.status_code == 422
    assert [r.json() for r in published] == [{"last_event_id": 1}] * 2
    assert published[1].headers["idempotent-replayed"] == "true"
    assert second.json() == {"last_event_id": 2}  # one append per key
    assert too_long.status_code == 400 and too_long.json()["error"] == "bad_idempotency_key"


async def test_a_request_while_the_first_is_handled_is_409(stack: Stack) -> None:
    key = secrets.token_hex(8)
    body = {"prompt": "hello", "max_tokens": 4}
    client_redis = aioredis.Redis.from_url(stack.redis.url)
    try:
        # The first request, mid-way: its claim held as a front-end holds it.
        held = Idempotency(client_redis, 60, 60_000)
        assert not isinstance(await held.claim("open", "generations", key, body_hash(body)), dict)
    finally:
        await client_redis.aclose()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        resp = await client.post("/v1/generations", json=body, headers={"idempotency-key": key})
    assert resp.status_code == 409 and resp.json()["error"] == "idempotency_in_progress"
    assert resp.headers["retry-after"] == "1"
