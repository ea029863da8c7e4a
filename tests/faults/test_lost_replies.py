"""Writes whose reply is lost (a failover, a cut connection) and that are sent again, by
redis-py's own retries or by their caller, find what they did (docs/reliability.md, "A
claim whose reply is lost"): a worker's claim of a generation, the worker protocol's
claim, a request's claim of its ``Idempotency-Key``, a chat submit's turn, a queued
message, a generation's create and its usage, a feed's and a Durable Stream's append.
None is refused as if another had made it, and none is done twice.

On real processes: a front-end or a worker whose Redis connections go through a relay
(``tests/support/reply_cut.py``) that lets the script run and cuts its connection before
the reply comes back. The worker's lease is far longer than the test, so a generation
that had to wait for it could not complete here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.auth import credentials
from broadcaster.chat.records import chat_script
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import script
from broadcaster.durable.storage import ds_script
from tests.support.faults import (
    create_generation,
    owner_pid,
    stored_events,
    stream_meta,
    wait_status,
)
from tests.support.polling import poll, until
from tests.support.procs import Proc, start_frontend, start_worker, stop_all
from tests.support.procs import own_redis as redis_of_its_own
from tests.support.reply_cut import ReplyCut
from tests.support.usage_calls import bearer, key_name
from worker.providers.fake import fake_reply

pytestmark = pytest.mark.anyio

LONG_LEASE = {"WORKER_LEASE_SECONDS": "120", "WORKER_FAKE_DELAY_MS": "5"}
"""A lease no generation in this test can wait for."""

CUTS = 6
"""The worker's claim replies lost in a row: more than redis-py's own tries of one command
(``core/connection.py``), so that the worker's asking again is tested too, not only
redis-py's."""


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own: no worker of another test's deployment takes its job."""
    server = redis_of_its_own(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def _port(server: EmbeddedRedis) -> int:
    assert server.port is not None, "the Redis server has not started"
    return server.port


def _sha(text: str) -> bytes:
    """What names a script in an ``EVALSHA``: Redis names scripts by their SHA-1."""
    return hashlib.sha1(text.encode()).hexdigest().encode()


def _claim_sha() -> bytes:
    return _sha(script("claim.lua", "broadcaster.generations"))


@contextlib.contextmanager
def deployed(
    redis: EmbeddedRedis,
    tmp_path: Path,
    needle: bytes,
    *,
    cuts: int = 1,
    worker: dict[str, str] | None = None,
    relayed: str = "frontend",
    frontend: dict[str, str] | None = None,
) -> Iterator[tuple[ReplyCut, Proc, Proc | None]]:
    """A front-end on ``redis`` with ``frontend``'s environment, and a worker with
    ``worker``'s (None: none); the one ``relayed`` names reaches Redis through a relay that
    loses the reply of the script ``needle`` names, ``cuts`` times. All stopped on the way
    out. Yields the relay, the front-end and the worker."""
    with ReplyCut(_port(redis), needle, cuts) as relay:
        url = {relayed: relay.url}
        procs = [start_frontend(url.get("frontend", redis.url), tmp_path, "frontend", frontend)]
        try:
            if worker is not None:
                procs.append(start_worker(url.get("worker", redis.url), tmp_path, "worker", worker))
            yield relay, procs[0], procs[1] if worker is not None else None
        finally:
            stop_all(procs[::-1])


async def test_a_claim_whose_reply_is_lost_is_asked_again_and_runs_at_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    deployment = deployed(
        own_redis, tmp_path, _claim_sha(), cuts=CUTS, worker=LONG_LEASE, relayed="worker"
    )
    with deployment as (relay, front, worker):
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as http:
            gid = await create_generation(http, front.url, "a claim's reply lost")
            # Well within the lease (120 s): only a claim asked again can get here.
            await wait_status(http, front.url, gid, {"completed"}, 60)
    assert worker is not None
    with redis_sync.Redis.from_url(own_redis.url) as r:
        meta = stream_meta(r, gid)
        stored = stored_events(r, gid)
    assert relay.cut == CUTS, f"the relay lost {relay.cut} claims' replies, not {CUTS}"
    # The claim that was made, answered again: one run, nobody lost, the lease untouched.
    assert (meta["attempt"], meta.get("lost", "0")) == ("1", "0"), meta
    assert owner_pid(meta.get("owner")) == worker.pid, meta
    assert "claim unanswered" in worker.log()
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    types = [e.type for e in stored]
    assert "data-continued" not in types and types[-1] == "finish", types
    deltas = (json.loads(e.data) for e in stored if e.type == "text-delta")
    text = "".join(d.get("delta", "") for d in deltas)
    assert text == "".join(fake_reply(json.loads(meta["request"])))


async def test_a_lease_whose_claim_reply_is_lost_is_given_to_the_worker_asking(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """The worker protocol's claim (``POST /v1/worker/claim``): the front-end's claim of
    the job, its reply lost and sent again by redis-py, finds itself, and the worker that
    asked gets the lease (it was dropped as a duplicate job of a live generation)."""
    with deployed(own_redis, tmp_path, _claim_sha()) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            ask = {"provider": "lost-claim", "wait_seconds": 0}
            assert (await http.post("/v1/worker/claim", json=ask)).status_code == 204
            body = {"provider": "lost-claim", "prompt": "a lease's claim lost"}
            made = await http.post("/v1/generations", json=body)
            assert made.status_code == 202, made.text
            gid = made.json()["id"]
            leased = await http.post("/v1/worker/claim", json={**ask, "wait_seconds": 10})
    assert relay.cut == 1, "the relay lost no claim's reply: the fault never happened"
    assert leased.status_code == 200, leased.text
    job = leased.json()
    assert job["generation_id"] == gid
    with redis_sync.Redis.from_url(own_redis.url) as r:
        meta = stream_meta(r, gid)
    assert (meta["attempt"], meta.get("lost", "0"), meta["owner"]) == ("1", "0", job["lease"])


async def test_an_idempotency_key_whose_claim_reply_is_lost_is_the_requests_own(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """``POST /v1/generations`` with an ``Idempotency-Key``: the key's claim, sent again
    after its reply was lost, is the request's (it was ``409`` "in flight", the request
    its own first), and a retry of the request is answered as the first."""
    needle = _sha(script("idempotency_claim.lua", "broadcaster.generations"))
    key = {"idempotency-key": "lost-reply-1"}
    with deployed(own_redis, tmp_path, needle) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            ask = {"provider": "lost-idem", "wait_seconds": 0}  # the provider advertised
            assert (await http.post("/v1/worker/claim", json=ask)).status_code == 204
            body = {"provider": "lost-idem", "prompt": "a key's claim lost"}
            first = await http.post("/v1/generations", json=body, headers=key)
            again = await http.post("/v1/generations", json=body, headers=key)
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_chat_submit_whose_reply_is_lost_takes_its_turn_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """``POST /v1/chat``: the submit's script, sent again after its reply was lost, finds
    its own generation the chat's (it was ``409``, another submit's as it seemed, with the
    chat left naming a generation that never started); the answer streams, once."""
    needle = _sha(chat_script("chat_submit.lua"))
    with deployed(own_redis, tmp_path, needle, worker=LONG_LEASE) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            message = {"id": "u0", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
            body = {"id": "lost-submit", "messages": [message], "max_tokens": 4}
            answered = await http.post("/v1/chat", json=body)
            listed = await http.get("/v1/chat/lost-submit/messages")
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    assert answered.status_code == 200, answered.text
    gid = answered.headers["x-generation-id"]
    assert b"finish" in answered.content
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["messages"]] == ["u0", gid]


@pytest.mark.parametrize("case", ["plain", "conditional", "the end"])
async def test_a_publish_whose_reply_is_lost_is_appended_once(
    tmp_path: Path, own_redis: EmbeddedRedis, case: str
) -> None:
    """``POST /v1/streams/{id}/events``: the append, sent again by redis-py after its reply
    was lost, finds its own token the stream's last and answers 201 with its seq, nothing
    written again (it was written twice; with ``expected_last_event_id`` it was refused
    409 ``conflict``; a terminal event, 409 ``ended``)."""
    stream = "lost-publish-" + case.replace(" ", "-")
    first = {"type": "data-note", "data": {"n": 1}}
    event = {"type": "finish"} if case == "the end" else {"type": "data-note", "data": {"n": 2}}
    query = "?expected_last_event_id=1" if case == "conditional" else ""
    with deployed(own_redis, tmp_path, _sha(script("append.lua")), cuts=0) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            url = f"/v1/streams/{stream}/events"
            assert (await http.post(url, json=first)).status_code == 201
            relay.cuts = 1  # the next append's reply is lost
            published = await http.post(url + query, json=event)
            after = await http.post(url, json={"type": "data-note", "data": {"n": 3}})
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    assert published.status_code == 201, published.text
    assert published.json() == {"last_event_id": 2}
    with redis_sync.Redis.from_url(own_redis.url) as r:
        stored = stored_events(r, stream)
    then = [] if case == "the end" else [(3, "data-note")]
    assert [(e.seq, e.type) for e in stored] == [(1, "data-note"), (2, event["type"]), *then]
    if case == "the end":
        assert after.status_code == 409 and after.json()["error"] == "ended", after.text
    else:
        assert after.json() == {"last_event_id": 3}, after.text


async def test_a_queued_message_whose_reply_is_lost_is_queued_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """``POST /v1/chat`` with ``multitask: enqueue`` while an answer runs: the queue's
    push, sent again after its reply was lost, finds its entry the queue's last (it was
    queued twice, and its answer run twice); the chat ends with one answer per message."""
    needle = _sha(script("chat_enqueue.lua", "broadcaster.chat"))
    slow = {**LONG_LEASE, "WORKER_FAKE_DELAY_MS": "60"}  # the first answer runs seconds

    def message(text: str, mid: str) -> dict[str, Any]:
        return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}

    with deployed(own_redis, tmp_path, needle, worker=slow) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=60) as http:
            chat = {"id": "lost-queue", "max_tokens": 64}
            first = asyncio.create_task(
                http.post("/v1/chat", json={**chat, "messages": [message("one", "u1")]})
            )

            async def running() -> bool:
                got = await http.get("/v1/chat/lost-queue/messages")
                return got.status_code == 200 and got.json().get("status") == "running"

            await poll(running, "the first answer running", 30, every=0.05)
            second = {**chat, "messages": [message("two", "u2")], "multitask": "enqueue"}
            queued = await http.post("/v1/chat", json=second)
            answered = await first
            listed = await http.get("/v1/chat/lost-queue/messages")
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    assert answered.status_code == queued.status_code == 200, (answered.text, queued.text)
    body = listed.json()
    assert body["queued"] == [] and body["status"] == "completed", body
    roles = [(m["role"], m["id"]) for m in body["messages"]]
    assert [r for r, _ in roles] == ["user", "assistant", "user", "assistant"], roles
    assert roles[3][1] == queued.headers["x-generation-id"], roles


async def test_a_generation_whose_create_reply_is_lost_is_created_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """``POST /v1/generations``: the create, sent again after its reply was lost, finds
    the generation it made (it was ``409 conflict``, the id taken by itself, and the
    generation it had made left queued with no job); it is answered 202 and runs."""
    needle = _sha(script("create_generation.lua", "broadcaster.generations"))
    with deployed(own_redis, tmp_path, needle, worker=LONG_LEASE) as (relay, front, _):
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as http:
            gid = await create_generation(http, front.url, "a create's reply lost")
            await wait_status(http, front.url, gid, {"completed"}, 60)
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    with redis_sync.Redis.from_url(own_redis.url) as r:
        meta = stream_meta(r, gid)
        names = r.keys("*:meta")
    assert meta["attempt"] == "1", meta
    assert len(names) == 1, names  # one generation made


async def test_a_generation_whose_spend_reply_is_lost_is_counted_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """A generation's usage added to its user's day (``spend.lua``), sent again after its
    reply was lost, finds the generation counted already (it was counted twice, the
    day's tokens and generations doubled, a budget crossed at half its size)."""
    key = "lost-" + secrets.token_hex(8)
    env = {"BROADCASTER_API_KEYS": credentials.hash_key(key) + ":admin+generate"}
    needle = _sha(script("spend.lua", "broadcaster.generations"))
    deployment = deployed(own_redis, tmp_path, needle, worker=LONG_LEASE, frontend=env)
    with deployment as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            auth = bearer(key)
            body = {"prompt": "a spend's reply lost", "max_tokens": 8}
            made = await http.post("/v1/generations", json=body, headers=auth)
            assert made.status_code == 202, made.text
            gid = made.json()["id"]

            async def counted() -> dict[str, Any] | None:
                got = await http.get("/v1/usage", params={"user": key_name(key)}, headers=auth)
                found: dict[str, Any] = got.json()
                return found if got.status_code == 200 and found["generations"] else None

            # Once the spend sent again is answered, the day's count is final.
            await until(lambda: relay.answered, "the spend sent again answered", 30)
            report = await poll(counted, "the generation counted", 30, every=0.1)
            status = (await http.get(f"/v1/generations/{gid}", headers=auth)).json()
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    usage = status["usage"]
    assert report["generations"] == 1, report
    assert report["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0, report


async def test_a_durable_stream_append_whose_reply_is_lost_is_appended_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """``POST /v1/stream/{path}`` (Durable Streams, no producer headers): the append, sent
    again after its reply was lost, finds its token the stream's last and answers as it
    was made (it was appended twice)."""
    needle = _sha(ds_script("ds_append.lua"))
    text = {"content-type": "text/plain"}
    with deployed(own_redis, tmp_path, needle) as (relay, front, _):
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
            url = "/v1/stream/lost-append"
            made = await http.put(url, headers=text)
            assert made.status_code == 201, made.text
            appended = await http.post(url, headers=text, content=b"once;")
            then = await http.post(url, headers=text, content=b"two;")
            read = await http.get(url, params={"offset": "-1"})
    assert relay.cut == 1, "the relay lost no reply: the fault never happened"
    assert appended.status_code == 204, appended.text
    assert then.status_code == 204, then.text
    assert read.status_code == 200, read.text
    assert read.content == b"once;two;"
