"""The chat routes (``/v1/chat``) on real front-end processes: every status they answer.

Most tests run on a Redis where no worker runs (the providers are advertised, as if the
workers were busy): a chat's generation then stays running for as long as the test
needs, so "while it runs" needs no timing. The tests of whole answers use the session's
deployment, whose worker runs the fake provider.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.auth import credentials
from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis
from tests.support.procs import (
    Deployment,
    Proc,
    advertise_providers,
    parse_sse,
    read_sse,
    start_frontend,
)

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example"
ADMIN = "admin-" + secrets.token_hex(8)
MINTER = "mint-" + secrets.token_hex(8)
STARTER = "gen-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)
KEYS = ",".join(
    [
        credentials.hash_key(ADMIN),
        credentials.hash_key(MINTER) + ":tokens",
        credentials.hash_key(STARTER) + ":generate",
    ]
)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def user(text: str, mid: str = "u1") -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


def chat_body(chat_id: str, *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "messages": list(messages) or [user("hello")],
        "trigger": "submit-message",
        **extra,
    }


def new_chat() -> str:
    return "chat-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def idle_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("chat-redis"), persistent=False)
    server.start(reuse=False)
    advertise_providers(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idle(idle_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A front-end with CORS and a small chat body limit; no worker."""
    proc = start_frontend(
        idle_redis.url,
        tmp_path_factory.mktemp("chat"),
        "frontend-chat",
        env={
            "BROADCASTER_CORS_ORIGINS": ORIGIN,
            "BROADCASTER_CHAT_MAX_BODY_BYTES": "4096",
        },
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def secured(idle_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_frontend(
        idle_redis.url,
        tmp_path_factory.mktemp("chat-sec"),
        "frontend-chat-secured",
        env={
            "BROADCASTER_API_KEYS": KEYS,
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
        },
    )
    yield proc
    proc.stop()


@asynccontextmanager
async def opened(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[tuple[httpx.Response, bytes]]:
    """A streaming answer, its first bytes read (an SSE answer begins with ``retry:``),
    closed on leaving."""
    async with client.stream(method, url, **kwargs) as resp:
        if resp.status_code != 200:
            yield resp, await resp.aread()
            return
        # Held until the end: an iterator dropped would close the response with it.
        chunks = resp.aiter_raw()
        yield resp, await anext(chunks)
        del chunks


async def test_submit_answers_with_the_stream_and_a_second_submit_is_409(idle: Proc) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, first):
            assert resp.status_code == 200, first
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert resp.headers["x-accel-buffering"] == "no"
            assert resp.headers["cache-control"].startswith("no-cache")
            assert first.startswith(b"retry:")
            generation = resp.headers["x-generation-id"]
        busy = await client.post("/v1/chat", json=chat_body(chat))
        assert busy.status_code == 409
        assert busy.json()["error"] == "chat_busy"
        assert busy.json()["generation_id"] == generation
        status = (await client.get(f"/v1/generations/{generation}")).json()
        assert status["status"] == "queued"
        assert status["id"] == generation


async def test_of_submits_racing_on_one_chat_exactly_one_starts(idle: Proc) -> None:
    chat = new_chat()

    async def submit(client: httpx.AsyncClient) -> int:
        async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, _):
            return resp.status_code

    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        statuses = await asyncio.gather(*(submit(client) for _ in range(8)))
        assert sorted(statuses) == [200] + [409] * 7, statuses
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
        # The one that started is the chat's generation, and it is queued once.
        queued = (await client.get(f"/v1/generations/{listed['generation_id']}")).json()
        assert queued["status"] == "queued"


async def test_resume_streams_the_running_generation_then_204_once_stopped(idle: Proc) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        assert (await client.get(f"/v1/chat/{chat}/stream")).status_code == 204
        async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, _):
            generation = resp.headers["x-generation-id"]
        async with opened(client, "GET", f"/v1/chat/{chat}/stream") as (resp, first):
            assert resp.status_code == 200
            assert resp.headers["x-generation-id"] == generation
            assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert first.startswith(b"retry:")
        stopped = await client.post(f"/v1/chat/{chat}/stop")
        assert stopped.status_code == 202
        assert stopped.json() == {"id": chat, "generation_id": generation, "status": "cancelled"}
        assert (await client.get(f"/v1/chat/{chat}/stream")).status_code == 204
        # A client that says what it saw still gets the rest: here the abort.
        rest = await read_sse(client, f"{idle.url}/v1/chat/{chat}/stream", last_event_id="0")
        assert rest.status == 200 and rest.done
        assert [e.event for e in rest.typed()] == ["abort"]
        again = await client.post(f"/v1/chat/{chat}/stop")
        assert again.status_code == 409 and again.json()["error"] == "ended"
        # Stopped, the chat takes a new submit.
        async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, _):
            assert resp.status_code == 200
            assert resp.headers["x-generation-id"] != generation


async def test_regenerate_cancels_the_running_generation_and_replaces_it(idle: Proc) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, _):
            old = resp.headers["x-generation-id"]
        body = chat_body(chat, trigger="regenerate-message")
        body["trigger"] = "regenerate-message"
        async with opened(client, "POST", "/v1/chat", json=body) as (resp, first):
            assert resp.status_code == 200, first
            new = resp.headers["x-generation-id"]
        assert new != old
        assert (await client.get(f"/v1/generations/{old}")).json()["status"] == "cancelled"
        old_events = await read_sse(client, f"{idle.url}/v1/streams/{old}/events")
        assert [e.event for e in old_events.typed()] == ["abort"]
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
        assert listed["generation_id"] == new and listed["status"] == "queued"


async def test_a_chat_outlives_its_latest_generation(idle: Proc, idle_redis: EmbeddedRedis) -> None:
    """Its record lives as long as its generation can (the default retention), and on:
    once the generation's stream is gone the chat still shows what its record holds."""
    chat = new_chat()
    store = redis_sync.Redis.from_url(idle_redis.url)
    try:
        async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
            async with opened(client, "POST", "/v1/chat", json=chat_body(chat)) as (resp, _):
                generation = resp.headers["x-generation-id"]
            ttl = store.ttl(keys.chat_key(chat))
            assert 0 < ttl <= keys.chat_ttl(keys.IDLE_TTL, keys.ENDED_TTL)
            assert store.ttl(keys.meta_key(generation)) <= ttl
            # The generation expires (as Redis would expire its keys): the chat stays.
            store.delete(*keys.stream_keys(generation))
            assert (await client.get(f"/v1/chat/{chat}/stream")).status_code == 204
            kept = (await client.get(f"/v1/chat/{chat}/messages")).json()
            assert kept["status"] == "expired"
            assert [m["role"] for m in kept["messages"]] == ["user"]
            stopped = await client.post(f"/v1/chat/{chat}/stop")
            assert stopped.status_code == 409 and stopped.json()["error"] == "ended"
            store.delete(keys.chat_key(chat))  # and when its record expires, so does it
            gone = await client.get(f"/v1/chat/{chat}/messages")
            assert gone.status_code == 404 and "expired" in gone.json()["message"]
    finally:
        store.close()


async def test_a_front_end_at_its_connection_limit_starts_nothing(
    idle_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    full = start_frontend(
        idle_redis.url, tmp_path, "frontend-one", env={"BROADCASTER_MAX_CONNECTIONS": "1"}
    )
    first, second = new_chat(), new_chat()
    try:
        async with httpx.AsyncClient(base_url=full.url, timeout=10) as client:
            async with opened(client, "POST", "/v1/chat", json=chat_body(first)) as (resp, _):
                assert resp.status_code == 200
                busy = await client.post("/v1/chat", json=chat_body(second))
                assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
            # Nothing was started for the refused chat: it can be submitted again.
            assert (await client.get(f"/v1/chat/{second}/messages")).status_code == 404
    finally:
        full.stop()


async def test_unknown_chats_and_bad_ids(idle: Proc) -> None:
    chat = new_chat()
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        assert (await client.get(f"/v1/chat/{chat}/stream")).status_code == 204
        missing = await client.post(f"/v1/chat/{chat}/stop")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert (await client.get(f"/v1/chat/{chat}/messages")).status_code == 404
        for route in ("stream", "messages"):
            bad = await client.get(f"/v1/chat/bad.id/{route}")
            assert bad.status_code == 404 and "ids match" in bad.json()["message"]
        assert (await client.post("/v1/chat/bad.id/stop")).status_code == 404


INVALID: list[tuple[str, Any, str]] = [
    ("id not a string", {**chat_body("c1"), "id": 5}, "id"),
    ("bad id", chat_body("a/b"), "id"),
    ("not an object", [1, 2], "id"),
    ("bad trigger", {**chat_body("c1"), "trigger": "resume-stream"}, "trigger"),
    ("no messages", {**chat_body("c1"), "messages": []}, "messages"),
    ("unknown field", {**chat_body("c1"), "userId": "u"}, "userId"),
    ("bad role", chat_body("c1", {"id": "m", "role": "tool", "parts": []}), "role"),
    (
        "system file",
        chat_body(
            "c1",
            {"id": "s", "role": "system", "parts": [{"type": "file", "mediaType": "a", "url": ""}]},
            user("x"),
        ),
        "system message holds only text",
    ),
    (
        "zip file",
        chat_body(
            "c1",
            {
                "id": "u",
                "role": "user",
                "parts": [{"type": "file", "mediaType": "application/zip", "url": "data:,x"}],
            },
        ),
        "application/zip",
    ),
    (
        "bad image data",
        chat_body(
            "c1",
            {
                "id": "u",
                "role": "user",
                "parts": [
                    {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,!!"}
                ],
            },
        ),
        "base64",
    ),
    ("bad generation field", chat_body("c1", max_tokens="lots"), "max_tokens"),
    (
        "tool call without a result",
        chat_body(
            "c1",
            user("x"),
            {
                "id": "a",
                "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    {"type": "tool-f", "toolCallId": "t1", "state": "input-available", "input": {}},
                ],
            },
            user("y", "u2"),
        ),
        "has no tool_result",
    ),
]


@pytest.mark.parametrize(("why", "body", "named"), INVALID, ids=[i[0] for i in INVALID])
async def test_invalid_submits_are_422_naming_the_field(
    idle: Proc, why: str, body: Any, named: str
) -> None:
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        resp = await client.post("/v1/chat", json=body)
    assert resp.status_code == 422, (why, resp.text)
    assert named in resp.text, (why, resp.text)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "c1", "trigger": "submit-message", "messages": [{"id": "u", "role": "user",'
        b' "parts": [{"type": "text", "text": "x", "extra": NaN}]}]}',
        b'{"id": "c1", "trigger": "submit-message", "messages": [{"id": "\\udfff", "role":'
        b' "user", "parts": [{"type": "text", "text": "x"}]}]}',
    ],
    ids=["NaN", "lone surrogate"],
)
async def test_what_json_cannot_store_is_422(idle: Proc, raw: bytes) -> None:
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        resp = await client.post("/v1/chat", content=raw)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid_request"


async def test_a_body_over_the_chat_limit_is_413(idle: Proc) -> None:
    body = chat_body(new_chat(), user("x" * 5000))
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        resp = await client.post("/v1/chat", json=body)
    assert resp.status_code == 413 and resp.json()["error"] == "too_large"


async def test_cors_preflight_for_the_transport(idle: Proc) -> None:
    headers = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization",
    }
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        pre = await client.options("/v1/chat", headers=headers)
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        allowed = pre.headers["access-control-allow-headers"].lower()
        assert "content-type" in allowed and "authorization" in allowed
        chat = new_chat()
        stop_pre = await client.options(f"/v1/chat/{chat}/stop", headers=headers)
        assert stop_pre.status_code == 200
        resumed = await client.get(f"/v1/chat/{chat}/stream", headers={"origin": ORIGIN})
        assert resumed.status_code == 204
        assert resumed.headers["access-control-allow-origin"] == ORIGIN
        assert "x-generation-id" in resumed.headers["access-control-expose-headers"].split(", ")
        posted = opened(
            client, "POST", "/v1/chat", json=chat_body(chat), headers={"origin": ORIGIN}
        )
        async with posted as (resp, _):
            assert resp.status_code == 200
            assert resp.headers["access-control-allow-origin"] == ORIGIN
        other = await client.options("/v1/chat", headers={**headers, "origin": "https://evil"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


async def test_chat_tokens_open_one_chat_and_nothing_else(secured: Proc) -> None:
    chat, other = new_chat(), new_chat()
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as client:
        assert (await client.post(f"/v1/chat/{chat}/tokens")).status_code == 401
        minted = await client.post(f"/v1/chat/{chat}/tokens", headers=bearer(ADMIN))
        assert minted.status_code == 200, minted.text
        assert minted.json()["rights"] == ["read", "submit", "stop"]
        token = minted.json()["chat_token"]
        assert minted.json()["token_expires_at"] > 0
        short = await client.post(
            f"/v1/chat/{chat}/tokens", headers=bearer(MINTER), json={"ttl_seconds": 60}
        )
        assert short.status_code == 200
        assert (
            await client.post(f"/v1/chat/{chat}/tokens", headers=bearer(STARTER))
        ).status_code == 403
        viewer = credentials.mint_viewer_token(SECRET, chat, 60)[0]

        # No token: 401; a valid token that does not open this chat: 403.
        for creds in (
            {},
            bearer(viewer),
            bearer(credentials.mint_chat_token(SECRET, other, 60)[0]),
        ):
            status = 403 if creds else 401
            refused = await client.post("/v1/chat", json=chat_body(chat), headers=creds)
            assert refused.status_code == status, refused.text
            for route in ("stream", "messages"):
                assert (
                    await client.get(f"/v1/chat/{chat}/{route}", headers=creds)
                ).status_code == status
            stop = await client.post(f"/v1/chat/{chat}/stop", headers=creds)
            assert stop.status_code == status

        async with opened(
            client, "POST", "/v1/chat", json=chat_body(chat), headers=bearer(token)
        ) as (resp, first):
            assert resp.status_code == 200, first
            generation = resp.headers["x-generation-id"]
        # The chat token is no viewer token of the chat's generation ...
        events = await client.get(f"/v1/streams/{generation}/events", headers=bearer(token))
        assert events.status_code == 403
        # ... nor a token of another chat.
        other_body = chat_body(other)
        assert (
            await client.post("/v1/chat", json=other_body, headers=bearer(token))
        ).status_code == 403
        assert (
            await client.get(f"/v1/chat/{chat}/messages", params={"token": token})
        ).status_code == 200
        async with opened(client, "GET", f"/v1/chat/{chat}/stream", headers=bearer(token)) as (
            r,
            _,
        ):
            assert r.status_code == 200
        assert (
            await client.post(f"/v1/chat/{chat}/stop", headers=bearer(token))
        ).status_code == 202
        # An API key opens any chat for what its rights allow: a key that may generate
        # starts one, but may neither stop nor read it.
        async with opened(client, "POST", "/v1/chat", json=other_body, headers=bearer(STARTER)) as (
            resp,
            _,
        ):
            assert resp.status_code == 200
        assert (
            await client.post(f"/v1/chat/{other}/stop", headers=bearer(STARTER))
        ).status_code == 403
        assert (
            await client.post(f"/v1/chat/{other}/stop", headers=bearer(ADMIN))
        ).status_code == 202
        for key in (MINTER, STARTER):
            assert (
                await client.get(f"/v1/chat/{other}/messages", headers=bearer(key))
            ).status_code == 403
        assert (
            await client.get(f"/v1/chat/{other}/messages", headers=bearer(ADMIN))
        ).status_code == 200


async def test_tokens_need_a_secret(idle: Proc) -> None:
    async with httpx.AsyncClient(base_url=idle.url, timeout=10) as client:
        resp = await client.post(f"/v1/chat/{new_chat()}/tokens")
    assert resp.status_code == 409 and resp.json()["error"] == "tokens_disabled"


async def test_a_whole_answer_then_the_messages_then_204(deployment: Deployment) -> None:
    base = deployment.frontends[0].url
    chat = new_chat()
    body = chat_body(chat, user("Tell me about streams"), max_tokens=8)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        resp = await client.post("/v1/chat", json=body)
        assert resp.status_code == 200, resp.text
        events, _, _ = parse_sse(resp.content)
        assert events[-1].data == "[DONE]"
        typed = [e for e in events if e.event is not None]
        assert typed[0].event == "start" and typed[-1].event == "finish"
        generation = resp.headers["x-generation-id"]
        assert typed[0].json()["messageId"] == generation
        text = "".join(e.json()["delta"] for e in typed if e.event == "text-delta")
        # The other front-end serves the chat too: it lives in Redis.
        other = deployment.frontends[1].url
        assert (await client.get(f"{other}/v1/chat/{chat}/stream")).status_code == 204
        listed = (await client.get(f"{other}/v1/chat/{chat}/messages")).json()
    assert listed["status"] == "completed" and listed["generation_id"] == generation
    first, answer = listed["messages"]
    assert first == body["messages"][0]
    assert answer["id"] == generation and answer["role"] == "assistant"
    assert [p["type"] for p in answer["parts"]] == ["step-start", "text"]
    assert answer["parts"][1] == {"type": "text", "text": text, "state": "done"}
    assert answer["metadata"]["usage"]["outputTokens"] > 0
    assert json.dumps(listed)  # plain JSON all through


def test_the_logs_hold_no_traceback(idle: Proc, secured: Proc, tmp_path: Path) -> None:
    for proc in (idle, secured):
        assert "Traceback" not in proc.log(), proc.log()[-3000:]
