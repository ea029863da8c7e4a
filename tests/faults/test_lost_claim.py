"""A worker's claim whose reply is lost (docs/reliability.md, "A claim whose reply is
lost") is asked again at once, with the same token, and goes on as the claim it made:
not refused as held by its own hold, not left for its lease to lapse, no worker counted
lost.

On real processes: a front-end and a worker, the worker's Redis connections through a
relay (``tests/support/reply_cut.py``) that lets the claim script run and cuts its
connection before the reply comes back. The lease is far longer than the test, so a
generation that had to wait for it could not complete here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import script
from tests.support.faults import (
    create_generation,
    owner_pid,
    stored_events,
    stream_meta,
    wait_status,
)
from tests.support.procs import start_frontend, start_worker, stop_all
from tests.support.reply_cut import ReplyCut
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
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start(reuse=False)
    try:
        yield server
    finally:
        server.stop()


def _port(server: EmbeddedRedis) -> int:
    assert server.port is not None, "the Redis server has not started"
    return server.port


def _claim_sha() -> bytes:
    """What names the claim script in the worker's ``EVALSHA``."""
    text = script("claim.lua", "broadcaster.generations")
    return hashlib.sha1(text.encode()).hexdigest().encode()  # Redis names scripts by SHA-1


async def test_a_claim_whose_reply_is_lost_is_asked_again_and_runs_at_once(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    with ReplyCut(_port(own_redis), _claim_sha(), cuts=CUTS) as relay:
        front = start_frontend(own_redis.url, tmp_path, "frontend")
        worker = start_worker(relay.url, tmp_path, "worker", LONG_LEASE)
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as http:
                gid = await create_generation(http, front.url, "a claim's reply lost")
                # Well within the lease (120 s): only a claim asked again can get here.
                await wait_status(http, front.url, gid, {"completed"}, 60)
        finally:
            stop_all([worker, front])
    r = redis_sync.Redis.from_url(own_redis.url)
    try:
        meta = stream_meta(r, gid)
        stored = stored_events(r, gid)
    finally:
        r.close()
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
    with ReplyCut(_port(own_redis), _claim_sha()) as relay:
        front = start_frontend(relay.url, tmp_path, "frontend")
        try:
            async with httpx.AsyncClient(base_url=front.url, timeout=30) as http:
                ask = {"provider": "lost-claim", "wait_seconds": 0}
                assert (await http.post("/v1/worker/claim", json=ask)).status_code == 204
                body = {"provider": "lost-claim", "prompt": "a lease's claim lost"}
                made = await http.post("/v1/generations", json=body)
                assert made.status_code == 202, made.text
                gid = made.json()["id"]
                leased = await http.post("/v1/worker/claim", json={**ask, "wait_seconds": 10})
        finally:
            stop_all([front])
    assert relay.cut == 1, "the relay lost no claim's reply: the fault never happened"
    assert leased.status_code == 200, leased.text
    job = leased.json()
    assert job["generation_id"] == gid
    r = redis_sync.Redis.from_url(own_redis.url)
    try:
        meta = stream_meta(r, gid)
    finally:
        r.close()
    assert (meta["attempt"], meta.get("lost", "0"), meta["owner"]) == ("1", "0", job["lease"])
