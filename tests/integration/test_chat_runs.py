"""A chat answer's run id (``x-workflow-run-id``) and its stream at
``GET /v1/chat/{runId}/stream?startIndex=N``: the contract of the AI SDK's
``WorkflowChatTransport`` (tests/clients/test_workflow_chat.py drives the real one).

A front-end with no worker: the test writes the generation's events itself, as its
worker would, so every position is known exactly.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from tests.support.procs import Proc, advertise_providers, parse_sse, start_frontend

pytestmark = pytest.mark.anyio


def user(text: str, mid: str = "u1") -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("runs-redis"), persistent=False)
    server.start(reuse=False)
    advertise_providers(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def frontend(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    proc = start_frontend(redis_server.url, tmp_path_factory.mktemp("runs"), "frontend-runs")
    yield proc
    proc.stop()


@pytest.fixture
async def event_log(redis_server: EmbeddedRedis) -> AsyncIterator[EventLog]:
    client = aioredis.from_url(redis_server.url)
    yield EventLog(client)
    await client.aclose()


EVENTS: list[dict[str, Any]] = [
    {"type": "start", "messageId": "m1"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t"},
    *({"type": "text-delta", "id": "t", "delta": f"w{i} "} for i in range(6)),
    {"type": "text-end", "id": "t"},
    {"type": "finish-step"},
    {"type": "finish", "finishReason": "stop"},
]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    events, _, _ = parse_sse(raw)
    return [json.loads(e.data) for e in events if e.data and e.data != "[DONE]"]


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """A submit as WorkflowChatTransport makes it: a string body, so text/plain."""
    async with client.stream(
        "POST", "/v1/chat", content=json.dumps(body), headers={"content-type": "text/plain"}
    ) as resp:
        # The headers are what matters here; the stream is left open-ended.
        return resp


async def test_a_submit_without_an_id_gets_one_and_a_run_id(frontend: Proc) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as client:
        resp = await submit(client, {"messages": [user("Hi")]})
        assert resp.status_code == 200
        chat, generation = resp.headers["x-chat-id"], resp.headers["x-generation-id"]
        assert resp.headers["x-workflow-run-id"] == f"{chat}~{generation}~0"
        assert len(chat) == 22
        named = await submit(client, {"messages": [user("Hi")], "chatId": "chat-named"})
        assert named.headers["x-chat-id"] == "chat-named"
        listed = (await client.get(f"/v1/chat/{chat}/messages")).json()
        assert listed["generation_id"] == generation


async def test_start_index_resumes_exactly_and_counts_from_the_tail(
    frontend: Proc, event_log: EventLog
) -> None:
    chat = "chat-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as client:
        resp = await submit(client, {"id": chat, "messages": [user("Count")]})
        run = resp.headers["x-workflow-run-id"]
        generation = resp.headers["x-generation-id"]
        await event_log.append(generation, EVENTS, kind="generation")
        whole = await client.get(f"/v1/chat/{run}/stream?startIndex=0")
        assert whole.status_code == 200
        assert whole.headers["x-workflow-stream-tail-index"] == str(len(EVENTS) - 1)
        assert whole.headers["x-workflow-run-id"] == run
        assert chunks(whole.content) == EVENTS  # never compacted
        for start in (1, 5, len(EVENTS) - 1):
            part = await client.get(f"/v1/chat/{run}/stream", params={"startIndex": start})
            assert chunks(part.content) == EVENTS[start:], start
        # From the tail: the answer starts at the start of the part the asked chunk lands
        # in (-3 is the text's end: rewound to its text-start, index 2), and the tail index
        # moves with it so that the transport's count (tail + 1 + startIndex) is exact.
        for start, first in ((-1, 11), (-3, 2), (-len(EVENTS), 0), (-100, 0)):
            tail = await client.get(f"/v1/chat/{run}/stream", params={"startIndex": start})
            assert chunks(tail.content) == EVENTS[first:], start
            asked = max(0, len(EVENTS) + start)
            tail_index = int(tail.headers["x-workflow-stream-tail-index"])
            if first < asked:
                assert tail_index + 1 + start == first, start
            else:
                assert tail_index == len(EVENTS) - 1, start
        # Holding everything: an empty answer (the transport saw the finish anyway).
        done = await client.get(f"/v1/chat/{run}/stream", params={"startIndex": len(EVENTS)})
        assert done.status_code == 200 and chunks(done.content) == []
        ahead = await client.get(f"/v1/chat/{run}/stream", params={"startIndex": 99})
        assert ahead.status_code == 409
        # The chat's own resume is as before: an ended answer is 204.
        assert (await client.get(f"/v1/chat/{chat}/stream")).status_code == 204


async def test_a_run_with_a_base_counts_from_it(frontend: Proc, event_log: EventLog) -> None:
    """A run id's base: chunk i is event base + i + 1 (an answer that starts mid-way)."""
    chat = "chat-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as client:
        resp = await submit(client, {"id": chat, "messages": [user("Base")]})
        generation = resp.headers["x-generation-id"]
        await event_log.append(generation, EVENTS, kind="generation")
        run = f"{chat}~{generation}~4"
        got = await client.get(f"/v1/chat/{run}/stream?startIndex=2")
        assert chunks(got.content) == EVENTS[6:]
        assert got.headers["x-workflow-stream-tail-index"] == str(len(EVENTS) - 4 - 1)
        tail = await client.get(f"/v1/chat/{run}/stream?startIndex=-2")
        assert chunks(tail.content) == EVENTS[-2:]
        floor = await client.get(f"/v1/chat/{run}/stream?startIndex=-100")
        assert chunks(floor.content) == EVENTS[4:]


async def test_an_answer_that_ended_without_finish_gets_one(
    frontend: Proc, event_log: EventLog
) -> None:
    """WorkflowChatTransport reconnects until it sees ``finish``: an answer stopped
    (``abort``) gives it one after the abort, and a lone one once it holds everything."""
    chat = "chat-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as client:
        resp = await submit(client, {"id": chat, "messages": [user("Stop me")]})
        run = resp.headers["x-workflow-run-id"]
        generation = resp.headers["x-generation-id"]
        await event_log.append(generation, EVENTS[:4], kind="generation")
        assert (await client.post(f"/v1/chat/{chat}/stop")).status_code == 202
        got = await client.get(f"/v1/chat/{run}/stream?startIndex=2")
        assert [c["type"] for c in chunks(got.content)] == [
            "text-start",
            "text-delta",
            "abort",
            "finish",
        ]
        assert got.content.endswith(b"data: [DONE]\n\n")
        lone = await client.get(f"/v1/chat/{run}/stream?startIndex=5")
        assert chunks(lone.content) == [{"type": "finish"}]


async def test_a_run_id_of_another_chat_is_404(frontend: Proc) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as client:
        resp = await submit(client, {"id": "chat-owner", "messages": [user("Mine")]})
        generation = resp.headers["x-generation-id"]
        stolen = await client.get(f"/v1/chat/chat-thief~{generation}~0/stream?startIndex=0")
        assert stolen.status_code == 404
        bad = await client.get("/v1/chat/a~b~c/stream")
        assert bad.status_code == 404
        worse = await client.get("/v1/chat/a~b/stream")
        assert worse.status_code == 404


def test_the_logs_hold_no_traceback(frontend: Proc, tmp_path: Path) -> None:
    assert "Traceback" not in frontend.log(), frontend.log()[-3000:]
