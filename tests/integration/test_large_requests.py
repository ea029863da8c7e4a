"""Large requests on one real front-end whose off-loop pool is one thread with no room to
wait (``BROADCASTER_BODY_THREADS=1``, ``BROADCASTER_BODY_WAITING=0``), on a real Redis,
no worker: a long chat read whole (its history decoded, converted and encoded off the
event loop) answers what was sent, through every route that reads it; large bodies past
the pool's room are 503 ``busy`` with ``Retry-After``, and the pool takes work again
once they are done."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from broadcaster.auth import credentials
from tests.support.procs import Proc, advertise_providers, start_frontend

pytestmark = pytest.mark.anyio

SECRET = secrets.token_hex(16)
KEY = "large-" + secrets.token_hex(8)
ADMIN = {"authorization": f"Bearer {KEY}"}
RUN = "/v1/agui/agent/default/run"
CONNECT = "/v1/agui/agent/default/connect"


@pytest.fixture(scope="module")
def front(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    advertise_providers(redis_url)  # the runs' answers stay queued: no worker runs
    settings = {
        "BROADCASTER_API_KEYS": credentials.hash_key(KEY),
        "BROADCASTER_TOKEN_SECRET": SECRET,
        "BROADCASTER_BODY_THREADS": "1",
        "BROADCASTER_BODY_WAITING": "0",
        "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
        "BROADCASTER_SUBMIT_RATE_PER_MINUTE": "0",
    }
    proc = start_frontend(redis_url, tmp_path_factory.mktemp("large"), "frontend-large", settings)
    yield proc
    proc.stop()


@pytest.fixture
async def client(front: Proc) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=front.url, timeout=60) as c:
        yield c


async def _snapshot(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    """The messages of the ``MESSAGES_SNAPSHOT`` an AG-UI route opens with (the answer
    that follows is not waited for)."""
    async with client.stream("POST", path, json=body, headers=ADMIN) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            event = json.loads(line[6:]) if line.startswith("data: ") else {}
            if event.get("type") == "MESSAGES_SNAPSHOT":
                return list(event["messages"])
    raise AssertionError(f"{path}: no MESSAGES_SNAPSHOT")


async def test_a_long_chat_is_read_whole_as_it_was_sent_by_every_route(
    client: httpx.AsyncClient,
) -> None:
    thread = "long-" + secrets.token_hex(4)
    # About a megabyte of history: past what is decoded and encoded on the loop.
    sent = [
        {"id": f"m{i}", "role": "user", "content": f"message {i} é " + "x" * 1000}
        for i in range(900)
    ]
    run = {"threadId": thread, "runId": "r1", "messages": sent}
    expected = [(m["id"], m["content"]) for m in sent]
    for path in (RUN, CONNECT):
        shown = await _snapshot(client, path, run)
        assert [(m["id"], m["content"]) for m in shown] == expected, path
    whole = await client.get(f"/v1/chat/{thread}/messages", headers=ADMIN)
    assert whole.status_code == 200, whole.text
    kept = whole.json()["messages"]
    # The runs' answer is in the history too once its turn is settled: after what was sent.
    assert [(m["id"], m["parts"][0]["text"]) for m in kept[: len(sent)]] == expected
    assert [m["role"] for m in kept[len(sent) :]] in ([], ["assistant"]), kept[len(sent) :]


def _invalid_chat(size: int) -> bytes:
    """A chat body of about ``size`` bytes whose last message is invalid: parsed and
    checked whole (off the loop), then 422, nothing started."""
    messages = [
        {"id": f"m{i}", "role": "user", "parts": [{"type": "text", "text": "y" * 8000}]}
        for i in range(size // 8100)
    ]
    messages[-1]["role"] = "nobody"
    return json.dumps({"id": "busy-" + secrets.token_hex(4), "messages": messages}).encode()


async def test_large_bodies_past_the_pools_room_are_503_busy_and_the_pool_recovers(
    client: httpx.AsyncClient,
) -> None:
    body = _invalid_chat(4 * 1024 * 1024)
    head = {**ADMIN, "content-type": "application/json"}

    async def post() -> httpx.Response:
        return await client.post("/v1/chat", content=body, headers=head)

    answers = await asyncio.gather(*(post() for _ in range(8)))
    statuses = sorted(r.status_code for r in answers)
    # One thread, none waiting: the bodies that came while it worked were refused.
    assert set(statuses) == {422, 503}, statuses
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"] == "busy", r.text
            assert r.headers["retry-after"] == "1"
        else:
            assert r.json()["error"] == "invalid_request", r.text
    # Every refusal gave its room back: one at a time, each is worked on.
    for _ in range(3):
        assert (await post()).status_code == 422
    assert (await client.get("/healthz")).status_code == 200


async def test_a_refusal_before_a_large_body_is_read_reaches_the_client_whole(
    client: httpx.AsyncClient,
) -> None:
    """The answer is written before the body is read; the connection then reads and
    drops what the client still sends, so that a client sending its body to the end (as
    httpx does) reads the answer, never a reset. Meanwhile the front-end answers others."""
    big = b'{"id":"c","messages":["' + b"y" * 12_000_000 + b'"]}'
    over = b" " * (16 * 1024 * 1024 + 1)  # past the chat routes' bound: 413 unread
    stop = asyncio.Event()
    health: list[int] = []

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as other:
            while not stop.is_set():
                health.append((await other.get("/healthz")).status_code)

    probing = asyncio.create_task(probe())
    answers = []
    try:
        for path in ["/v1/chat", RUN] * 3:
            # A new connection each: each answer closes its own.
            async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60) as one:
                r = await one.post(path, content=big, headers={"content-type": "application/json"})
                answers.append((r.status_code, r.json()["error"]))
                r = await one.post("/v1/chat", content=over, headers=ADMIN)
                answers.append((r.status_code, r.json()["error"]))
    finally:
        stop.set()
        await probing
    assert answers == [(401, "unauthorized"), (413, "too_large")] * 6
    assert health and set(health) == {200}


async def test_a_client_that_hangs_up_inside_its_body_leaves_no_unhandled_error(
    front: Proc, client: httpx.AsyncClient
) -> None:
    """Halfway through a large body the client closes its connection: nobody is left to
    answer, and the front-end logs no unhandled error (a traceback formatted on the event
    loop each time) and goes on serving."""
    head = (
        f"POST /v1/chat HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY}\r\n"
        "content-type: application/json\r\ncontent-length: 4000000\r\n\r\n"
    ).encode()
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(head + b'{"id":"c","messages":["' + b"y" * 1_000_000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    for _ in range(100):  # until the front-end has read the three hang-ups
        if front.log().count("client gone on POST /v1/chat") == 3:
            break
        await asyncio.sleep(0.05)
    log = front.log()
    assert log.count("client gone on POST /v1/chat") == 3, log[-3000:]
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    assert (await client.get("/healthz")).status_code == 200


async def test_a_large_publish_over_the_event_limit_is_refused_as_the_append_refuses_it(
    client: httpx.AsyncClient,
) -> None:
    """Its events are checked off the event loop, and refused where the append would
    refuse them: after its ``Idempotency-Key`` is taken, which is then given back."""
    path = f"/v1/streams/large-publish-{secrets.token_hex(4)}/events"
    event = {"type": "data-x", "data": [0] * 40_000}  # over 64 KiB of body, and encoded
    head = {**ADMIN, "idempotency-key": secrets.token_hex(8)}
    for _ in range(2):
        r = await client.post(path, json=event, headers=head)
        assert (r.status_code, r.json()) == (
            413,
            {
                "error": "too_large",
                "message": "a 'data-x' event of 80026 bytes is over the limit of 65536",
            },
        )
    r = await client.post(path, json={"type": "data-x"}, headers=head)
    assert (r.status_code, r.json()) == (201, {"last_event_id": 1})
