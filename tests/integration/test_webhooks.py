"""Signed webhooks end to end: real front-ends and a worker (fake provider) on the
suite's Redis, real uvicorn receivers on 127.0.0.1, every delivery verified with the
``standardwebhooks`` library as a receiver would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from standardwebhooks import Webhook

from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog
from broadcaster.webhooks.outbox import Outbox
from broadcaster.webhooks.signing import Signer
from examples.webhook_receiver import create_app
from tests.support.polling import wait_for
from tests.support.procs import (
    ROOT,
    Proc,
    advertise_providers,
    processes,
    read_sse,
    run_python,
    start_frontend,
    start_worker,
)
from tests.support.webhooks import (
    SECRET,
    Received,
    Receiver,
    Served,
    clear_webhook_keys,
    own_database,
    webhook_env,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def worker(db_url: str, logs_dir: Path) -> Iterator[Proc]:
    """A generation of 64 tokens runs about 1.3 s (time to cancel it); its tools include
    ``add``, so a request bringing a tool of that name fails."""
    env = {
        "WORKER_FAKE_DELAY_MS": "20",
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "PYTHONPATH": str(ROOT),
    }
    proc = start_worker(db_url, logs_dir, "webhooks-worker", env)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db_url(redis_url: str) -> str:
    return own_database(redis_url)


@pytest.fixture
def clean(db_url: str) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(db_url)
    clear_webhook_keys(client)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def verified(r: Received) -> dict[str, Any]:
    """The body, as ``standardwebhooks`` verifies it (raises if the signature fails)."""
    body: dict[str, Any] = Webhook(SECRET).verify(r.body, r.headers)
    return body


async def create(client: httpx.AsyncClient, base: str, **body: Any) -> str:
    r = await client.post(f"{base}/v1/generations", json={"prompt": "hi", **body})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def dead_list(db_url: str) -> list[dict[str, Any]]:
    out = run_python(
        ["-m", "broadcaster", "webhooks", "dead", "--json"],
        60,
        env={"REDIS_URL": db_url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    out.check_returncode()
    return [json.loads(line) for line in out.stdout.splitlines()]


def replay(db_url: str, *args: str) -> str:
    out = run_python(
        ["-m", "broadcaster", "webhooks", "replay", *args],
        60,
        env={"REDIS_URL": db_url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    out.check_returncode()
    return out.stdout


async def test_a_receiver_failing_twice_gets_the_event_signed_on_the_third_attempt(
    db_url: str, logs_dir: Path, worker: Proc, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    receiver.answers["hooks"] = [500, 500]
    fe = start_frontend(db_url, logs_dir, "wh-retry", webhook_env(receiver.url()))
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            gid = await create(client, fe.url, max_tokens=8)
            await asyncio.to_thread(wait_for, "no webhook accepted", receiver.accepted, 60)

            def counted() -> bool:  # once the delivery is settled
                text = httpx.get(f"{fe.url}/metrics").text
                return "broadcaster_webhook_deliveries_total 1.0" in text

            await asyncio.to_thread(wait_for, "the delivery was not counted", counted, 30)
            metrics = (await client.get(f"{fe.url}/metrics")).text
            status = (await client.get(f"{fe.url}/v1/generations/{gid}")).json()
    got = receiver.at()
    assert [r.answered for r in got] == [500, 500, 200]
    assert len({r.webhook_id for r in got}) == 1  # the same message, three times
    for r in got:
        body = verified(r)  # each attempt signed on its own
    assert body["type"] == "generation.finished"
    data = body["data"]
    assert data["id"] == gid and data["status"] == "completed" == status["status"]
    assert data["finish_reason"] == "stop" and data["error"] is None
    assert data["usage"] == status["usage"] and data["usage"]["output_tokens"] > 0
    assert data["last_event_id"] == status["last_event_id"]
    assert data["created_at"] == status["created_at"]
    assert body["timestamp"] == data["finished_at"]
    assert "broadcaster_webhook_attempts_total 3.0" in metrics
    assert 'broadcaster_webhook_failures_total{reason="http_5xx"} 2.0' in metrics
    assert clean.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 0  # settled: nothing left


async def test_a_feed_ended_by_a_publish_sends_stream_ended(
    db_url: str, logs_dir: Path, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    fe = start_frontend(db_url, logs_dir, "wh-feed", webhook_env(receiver.url()))
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            events = f"{fe.url}/v1/streams/job-wh-1/events"
            r = await client.post(events, json={"type": "data-progress", "data": {"pct": 50}})
            assert r.status_code == 201
            r = await client.post(events, json={"type": "finish"})
            assert r.status_code == 201
            await asyncio.to_thread(wait_for, "no webhook", receiver.accepted, 30)
    [got] = receiver.at()
    body = verified(got)
    assert body["type"] == "stream.ended"
    assert body["data"] == {
        "id": "job-wh-1",
        "type": "finish",
        "last_event_id": 2,
        "ended_at": body["timestamp"],
    }


async def test_streams_that_asked_for_no_webhooks_queue_none(
    db_url: str, clean: redis_sync.Redis
) -> None:
    """A feed created by a process without webhooks (here a ``Publisher``-like log) ends
    without writing to the outbox, and ``Outbox.add`` queues nothing for it; a feed
    created with them does both."""
    from redis.asyncio import Redis

    redis = Redis.from_url(db_url)
    try:
        plain, hooked = EventLog(redis), EventLog(redis, webhooks=True)
        await plain.append("wh-plain", [{"type": "finish"}], kind="feed")
        assert clean.xlen(keys.outbox_key("wh-plain")) == 0
        assert not await Outbox(redis).add("wh-plain", "stream.occupied", {"id": "wh-plain"})
        await hooked.append("wh-hooked", [{"type": "data-x"}], kind="feed")
        assert await Outbox(redis).add("wh-hooked", "stream.occupied", {"id": "wh-hooked"})
        await plain.append("wh-hooked", [{"type": "error", "errorText": "x"}])
        entries = clean.xrange(keys.outbox_key("wh-hooked"))
        assert [e[1][b"k"] for e in entries] == [b"event", b"end"]
        assert entries[1][1][b"type"] == b"error"  # written by a writer without settings
    finally:
        await redis.aclose()


async def test_an_event_added_through_the_outbox_is_delivered(
    db_url: str, logs_dir: Path, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    from redis.asyncio import Redis

    fe = start_frontend(db_url, logs_dir, "wh-add", webhook_env(receiver.url()))
    redis = Redis.from_url(db_url)
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(f"{fe.url}/v1/streams/wh-room/events", json={"type": "data-a"})
            assert r.status_code == 201
        try:
            data = {"id": "wh-room", "viewers": 1}
            assert await Outbox(redis).add("wh-room", "stream.occupied", data)
        finally:
            await redis.aclose()
        await asyncio.to_thread(wait_for, "no webhook", receiver.accepted, 30)
    [got] = receiver.at()
    body = verified(got)
    assert (body["type"], body["data"]) == ("stream.occupied", data)


async def test_a_generations_own_webhook_url_is_checked_against_the_allow_list(
    db_url: str, logs_dir: Path, worker: Proc, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    env = webhook_env(
        receiver.url("deployment"),
        BROADCASTER_WEBHOOK_ALLOWED_ORIGINS=f"https://hooks.example.com,http://127.0.0.1:{receiver.port}",
    )
    fe = start_frontend(db_url, logs_dir, "wh-own", env)
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            for url in ("http://127.0.0.2:9/x", "https://hooks.example.com.evil.net/x", "ftp://x"):
                r = await client.post(
                    f"{fe.url}/v1/generations", json={"prompt": "hi", "webhook_url": url}
                )
                assert r.status_code == 422, r.text
                assert r.json()["details"][0]["loc"] == ["webhook_url"]
            gid = await create(client, fe.url, max_tokens=4, webhook_url=receiver.url("mine"))
            await asyncio.to_thread(
                wait_for,
                "not delivered to both",
                lambda: receiver.accepted("mine") and receiver.accepted("deployment"),
                30,
            )
    [own], [deployment] = receiver.at("mine"), receiver.at("deployment")
    assert verified(own) == verified(deployment)
    assert verified(own)["data"]["id"] == gid
    assert own.webhook_id == deployment.webhook_id  # one message, two receivers


async def test_cancelled_and_failed_generations_report_their_status(
    db_url: str, logs_dir: Path, worker: Proc, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    """A generation cancelled while it runs, and one the worker fails (a request tool
    named like one of the worker's own: refused before the model is called)."""
    fe = start_frontend(db_url, logs_dir, "wh-status", webhook_env(receiver.url()))
    clash = {"name": "add", "input_schema": {"type": "object"}}
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            cancelled = await create(client, fe.url, max_tokens=64)
            r = await client.post(f"{fe.url}/v1/generations/{cancelled}/cancel")
            assert r.status_code == 202
            failed = await create(client, fe.url, max_tokens=4, tools=[clash])
            await asyncio.to_thread(
                wait_for, "not both delivered", lambda: len(receiver.accepted()) == 2, 30
            )
            failed_status = (await client.get(f"{fe.url}/v1/generations/{failed}")).json()
    by_id = {verified(r)["data"]["id"]: verified(r)["data"] for r in receiver.at()}
    assert by_id[cancelled]["status"] == "cancelled"
    assert by_id[cancelled]["finish_reason"] == "cancelled"
    assert by_id[failed]["status"] == "failed" == failed_status["status"]
    assert by_id[failed]["finish_reason"] == "error"
    assert "has the name of a tool the worker runs" in by_id[failed]["error"]


async def test_the_dead_letter_list_and_replay(
    db_url: str, logs_dir: Path, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    """A receiver that always fails: after the (tiny) schedule the delivery is dead; an
    operator lists it, fixes the receiver and replays it: delivered under the same
    ``webhook-id``. A 410 is dead at once."""
    receiver.then["down"] = 503
    receiver.answers["gone"] = [410]
    env = webhook_env(
        receiver.url("down"),
        BROADCASTER_WEBHOOK_RETRY_TOTAL_SECONDS="1",
        BROADCASTER_WEBHOOK_ALLOWED_ORIGINS=f"http://127.0.0.1:{receiver.port}",
    )
    fe = start_frontend(db_url, logs_dir, "wh-dead", env)
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            events = f"{fe.url}/v1/streams/wh-doomed/events"
            assert (await client.post(events, json={"type": "finish"})).status_code == 201
            await asyncio.to_thread(
                wait_for, "not dead", lambda: clean.xlen(keys.WEBHOOK_DEAD_KEY) == 1, 30
            )
            [dead] = await asyncio.to_thread(dead_list, db_url)
            attempts = receiver.at("down")
            assert dead["attempts"] == len(attempts) >= 2
            assert dead["reason"] == "HTTP 503" and dead["type"] == "stream.ended"
            assert dead["webhook_id"] == attempts[0].webhook_id
            assert dead["body"] == verified(attempts[0])

            receiver.then["down"] = 200
            assert "1 deliveries queued again" in await asyncio.to_thread(replay, db_url, "--all")
            await asyncio.to_thread(wait_for, "no replay", lambda: receiver.accepted("down"), 30)
            assert receiver.accepted("down")[0].webhook_id == dead["webhook_id"]
            assert await asyncio.to_thread(dead_list, db_url) == []

            advertise_providers(db_url)  # admitted, though no worker may run in this test
            r = await client.post(
                f"{fe.url}/v1/generations",
                json={"prompt": "hi", "max_tokens": 2, "webhook_url": receiver.url("gone")},
            )
            assert r.status_code == 202
            gid = r.json()["id"]
            assert (await client.post(f"{fe.url}/v1/generations/{gid}/cancel")).status_code in (
                202,
                409,
            )
            await asyncio.to_thread(
                wait_for, "410 not dead", lambda: clean.xlen(keys.WEBHOOK_DEAD_KEY) == 1, 30
            )
            [gone] = await asyncio.to_thread(dead_list, db_url)
            assert (gone["attempts"], gone["to"]) == (1, receiver.url("gone"))


async def test_the_example_receiver_verifies_and_deduplicates(
    db_url: str, logs_dir: Path, worker: Proc, clean: redis_sync.Redis
) -> None:
    """``examples/webhook_receiver.py`` (docs/webhooks.md's receiver) against real
    deliveries: it handles each event once, refuses a forged one, and says yes to a
    duplicate without handling it again."""
    handled: list[dict[str, Any]] = []
    with Served(create_app(SECRET, handled.append)) as example:
        url = f"http://127.0.0.1:{example.port}/webhooks"
        fe = start_frontend(db_url, logs_dir, "wh-example", webhook_env(url))
        with processes(fe):
            async with httpx.AsyncClient(timeout=30) as client:
                gid = await create(client, fe.url, max_tokens=4)
                events = f"{fe.url}/v1/streams/wh-example-job/events"
                assert (await client.post(events, json={"type": "finish"})).status_code == 201
                await asyncio.to_thread(wait_for, "not handled", lambda: len(handled) == 2, 30)
                await asyncio.to_thread(
                    wait_for, "left", lambda: clean.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 0, 30
                )
                body = json.dumps(handled[0]).encode()
                signed = Signer(SECRET).headers("msg_test_1", body)
                assert (await client.post(url, content=body, headers=signed)).status_code == 204
                again = await client.post(url, content=body, headers=signed)
                forged = signed | {"webhook-signature": "v1," + "A" * 44}
                refused = await client.post(url, content=body, headers=forged)
    assert {e["data"]["id"] for e in handled[:2]} == {gid, "wh-example-job"}
    assert {e["type"] for e in handled[:2]} == {"generation.finished", "stream.ended"}
    assert (again.status_code, refused.status_code, len(handled)) == (204, 401, 3)


async def test_a_receiver_that_never_answers_delays_no_viewer(
    db_url: str, logs_dir: Path, worker: Proc, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    """Every attempt hangs (the receiver answers only when the test lets it), and the
    deliverer has one slot: viewers of a front-end delivering into that still get their
    generation whole, and the webhook arrives once the receiver answers."""
    receiver.held.add("hooks")
    env = webhook_env(receiver.url(), BROADCASTER_WEBHOOK_CONCURRENCY="1")
    fe = start_frontend(db_url, logs_dir, "wh-hang", env)
    with processes(fe):
        async with httpx.AsyncClient(timeout=30) as client:
            events = f"{fe.url}/v1/streams/wh-hang-job/events"
            assert (await client.post(events, json={"type": "finish"})).status_code == 201
            await asyncio.to_thread(wait_for, "no attempt", lambda: receiver.hanging, 30)
            gid = await create(client, fe.url, max_tokens=16)
            seen = await read_sse(client, f"{fe.url}/v1/streams/{gid}/events")
            assert receiver.at() == []  # every attempt so far is still unanswered
            receiver.release()

            def settled() -> bool:  # all answered, and their deliveries settled
                answered = {r.webhook_id for r in receiver.accepted()}
                return len(answered) == 4 and clean.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 0

            await asyncio.to_thread(wait_for, "not delivered", settled, 30)
    assert seen.done and seen.ids == list(range(1, len(seen.ids) + 1))
    assert seen.typed()[-1].event == "finish"
    types = {verified(r)["type"] for r in receiver.accepted()}
    # The job's end and the generation's; the generation also had a viewer come and go.
    assert types == {"stream.ended", "generation.finished", "stream.occupied", "stream.vacated"}
