"""Webhooks under faults and load: the delivering process killed with SIGKILL during
the backoff, 1,000 generations (150 in ``make test``) each delivered (none lost,
duplicates only under the same ``webhook-id``), and a Redis Cluster, whose outboxes live
on every node."""

from __future__ import annotations

import asyncio
import signal
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from standardwebhooks import Webhook

from broadcaster.core import keys
from broadcaster.core.embedded import ServerNotFound
from tests.support import long_form
from tests.support.polling import wait_for
from tests.support.procs import ROOT, Proc, processes, spawn, start_frontend, start_worker
from tests.support.topologies import WORKER_ENV, LocalCluster, start_cluster
from tests.support.webhooks import (
    SECRET,
    Received,
    Receiver,
    clear_webhook_keys,
    own_database,
    webhook_env,
)

pytestmark = pytest.mark.anyio

PATIENT = {
    "BROADCASTER_WEBHOOK_RETRY_BASE_SECONDS": "600",
    "BROADCASTER_WEBHOOK_RETRY_MAX_SECONDS": "600",
}
"""The victim's schedule: its own retry would come minutes later, so whatever delivers
the event after the kill is the other process, taking over."""


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


def start_deliverer(db_url: str, logs: Path, name: str, env: dict[str, str]) -> Proc:
    """``python -m broadcaster webhooks run``, once it says it delivers."""
    proc = spawn(
        name,
        ["-m", "broadcaster", "webhooks", "run"],
        {"REDIS_URL": db_url, **env},
        logs,
        fork=True,
    )
    wait_for(f"{name} silent", lambda: "delivering as" in proc.log() or not proc.alive(), 20)
    assert proc.alive(), proc.log()
    return proc


def pending(client: redis_sync.Redis) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.xpending_range(
        keys.WEBHOOK_DELIVERIES_KEY, keys.WEBHOOK_GROUP, "-", "+", 10
    )
    return rows


@pytest.mark.parametrize("victim", ["frontend", "standalone"])
async def test_a_deliverer_killed_during_the_backoff_is_taken_over(
    victim: str,
    db_url: str,
    logs_dir: Path,
    clean: redis_sync.Redis,
    receiver: Receiver,
) -> None:
    """The first attempt fails (500); the process that made it is killed with SIGKILL
    while it waits for its retry; another (the standalone deliverer after a front-end,
    a front-end after the standalone one) delivers the event, same ``webhook-id``."""
    receiver.answers["hooks"] = [500]
    url = receiver.url()
    if victim == "frontend":
        frontend = start_frontend(db_url, logs_dir, "wh-kill-fe", webhook_env(url, **PATIENT))
        killed = frontend
    else:
        off = webhook_env(url, BROADCASTER_WEBHOOK_DELIVERY="false")
        frontend = start_frontend(db_url, logs_dir, "wh-quiet-fe", off)
        killed = start_deliverer(db_url, logs_dir, "wh-kill-d", webhook_env(url, **PATIENT))
    rescuer: Proc | None = None
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            events = f"{frontend.url}/v1/streams/wh-kill-{victim}/events"
            assert (await client.post(events, json={"type": "finish"})).status_code == 201
        await asyncio.to_thread(wait_for, "no first attempt", receiver.at, 30)
        [row] = pending(clean)
        assert row["times_delivered"] == 1
        killed.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        assert len(receiver.at()) == 1  # it was waiting for its retry
        if victim == "frontend":
            rescuer = start_deliverer(db_url, logs_dir, "wh-rescue-d", webhook_env(url))
        else:
            rescuer = start_frontend(db_url, logs_dir, "wh-rescue-fe", webhook_env(url))
        await asyncio.to_thread(wait_for, "not taken over", receiver.accepted, 60)
        taken = time.monotonic() - killed_at
    finally:
        for p in (frontend, killed, rescuer):
            if p is not None:
                p.stop()
    first, second = receiver.at()
    assert (first.answered, second.answered) == (500, 200)
    assert first.webhook_id == second.webhook_id
    assert Webhook(SECRET).verify(second.body, second.headers)["type"] == "stream.ended"
    assert "took over" in rescuer.log()
    assert clean.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 0
    print(f"\n{victim} killed: delivered by the other {taken:.1f} s after the kill")


GENERATIONS = long_form.budget(150, 1000)
"""150 in ``make test`` (one in ten failing, one in ten cancelled at once, about one in
seven refused at its first delivery and retried), 1,000 in ``make test-long``."""
CLASH = {"name": "add", "input_schema": {"type": "object"}}
"""A request tool named like one of the worker's own (``tests.support.worker_tools``):
the worker refuses the generation before calling the model, so it fails."""


async def start_all(client: httpx.AsyncClient, bases: list[str]) -> dict[str, str]:
    """``GENERATIONS`` generations over the front-ends, 50 requests at a time: every tenth
    cancelled at once, every tenth (another) failing at the worker. Their ids, and
    what each was meant to end as."""
    gate = asyncio.Semaphore(50)
    meant: dict[str, str] = {}

    async def one(i: int) -> None:
        base = bases[i % len(bases)]
        body: dict[str, Any] = {"prompt": f"n{i}", "max_tokens": 3 if i % 10 else 40}
        if i % 10 == 7:
            body["tools"] = [CLASH]
        async with gate:
            r = await client.post(f"{base}/v1/generations", json=body)
            assert r.status_code == 202, r.text
            gid = r.json()["id"]
            meant[gid] = "failed" if i % 10 == 7 else "completed"
            if i % 10 == 0:
                c = await client.post(f"{base}/v1/generations/{gid}/cancel")
                assert c.status_code in (202, 409)  # 409: it had already finished
                meant[gid] = "cancelled" if c.status_code == 202 else "completed"

    await asyncio.gather(*(one(i) for i in range(GENERATIONS)))
    return meant


@long_form.mark
@pytest.mark.timeout(600)
async def test_a_thousand_generations_each_delivered(
    db_url: str, logs_dir: Path, clean: redis_sync.Redis, receiver: Receiver
) -> None:
    seen_first: set[str] = set()

    def decide(r: Received) -> int:
        first = r.webhook_id not in seen_first
        seen_first.add(r.webhook_id)
        return 503 if first and zlib.crc32(r.webhook_id.encode()) % 7 == 0 else 200

    receiver.decide = decide
    env = webhook_env(receiver.url())
    worker_env = {
        "WORKER_FAKE_DELAY_MS": "1",
        "WORKER_CONCURRENCY": "32",
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        start_frontend(db_url, logs_dir, "wh-load-a", env),
        start_frontend(db_url, logs_dir, "wh-load-b", env),
        start_worker(db_url, logs_dir, "wh-load-worker", worker_env),
    ]
    with processes(*procs):
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=60) as client:
            meant = await start_all(client, [p.url for p in procs[:2]])
        created = time.monotonic() - started

        def finished() -> set[str]:
            return {r.json()["data"]["id"] for r in receiver.accepted()}

        await asyncio.to_thread(
            wait_for, "not every generation", lambda: finished() >= meant.keys(), 300
        )
        took = time.monotonic() - started
        await asyncio.to_thread(
            wait_for, "unsettled", lambda: clean.xlen(keys.WEBHOOK_DELIVERIES_KEY) == 0, 30
        )
    got = receiver.at()
    by_id: dict[str, set[str]] = {}
    for r in got:
        body = Webhook(SECRET).verify(r.body, r.headers)
        by_id.setdefault(body["data"]["id"], set()).add(r.webhook_id)
    assert by_id.keys() == meant.keys()  # none lost, none unknown
    assert all(len(ids) == 1 for ids in by_id.values())  # one message per generation
    accepted = Counter(r.webhook_id for r in receiver.accepted())
    duplicates = sum(n - 1 for n in accepted.values())
    statuses = {r.json()["data"]["id"]: r.json()["data"]["status"] for r in receiver.accepted()}
    with clean.pipeline(transaction=False) as pipe:
        for gid in meant:
            pipe.hget(keys.meta_key(gid), "status")
        stored = dict(zip(meant, (s.decode() for s in pipe.execute()), strict=True))
    assert statuses == stored == meant
    counts = Counter(statuses.values())
    assert counts["failed"] == GENERATIONS // 10 and counts["cancelled"] > 0
    retried = len(got) - len(accepted) - duplicates
    assert retried > 0 and clean.xlen(keys.WEBHOOK_DEAD_KEY) == 0
    print(
        f"\n{GENERATIONS} generations ({dict(counts)}): created in {created:.1f} s, every "
        f"generation.finished accepted {took:.1f} s after the first request; "
        f"{len(got)} POSTs, {retried} refused first attempts retried, {duplicates} duplicates"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    try:
        c = start_cluster(tmp_path_factory.mktemp("wh-cluster"), primaries=3, replicas=0)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    try:
        yield c
    finally:
        c.stop()


async def test_webhooks_on_a_cluster(
    cluster: LocalCluster, logs_dir: Path, receiver: Receiver
) -> None:
    """Streams on every primary, so outboxes on every primary: the front-ends' deliverers
    poll them (a Cluster allows no multi-slot read) and deliver every end once."""
    env = {"REDIS_CLUSTER": "true"}
    # A poll reads the 256 outboxes one by one (each XREADGROUP's keys asked of a node by
    # redis-py's cluster client first): every 0.1 s, two front-ends' polls cost half this
    # test's CPU. What is checked does not depend on how often they poll.
    hooks = webhook_env(receiver.url(), BROADCASTER_WEBHOOK_POLL_SECONDS="0.5") | env
    a = start_frontend(cluster.seed, logs_dir, "wh-cluster-a", hooks)
    b = start_frontend(cluster.seed, logs_dir, "wh-cluster-b", hooks)
    worker = start_worker(cluster.seed, logs_dir, "wh-cluster-worker", WORKER_ENV | env)
    with processes(a, b, worker):
        gids = cluster.on_every_primary(8, lambda i: f"wh-cluster-gen-{i}", keys.outbox_key)
        async with httpx.AsyncClient(timeout=30) as client:
            for i, gid in enumerate(gids):
                r = await client.post(
                    f"{(a, b)[i % 2].url}/v1/generations",
                    json={"id": gid, "prompt": f"c{i}", "max_tokens": 4},
                )
                assert r.status_code == 202, r.text
                assert r.json()["id"] == gid
            for i in range(6):
                events = f"{a.url}/v1/streams/wh-cluster-feed-{i}/events"
                assert (await client.post(events, json={"type": "finish"})).status_code == 201
        await asyncio.to_thread(
            wait_for, "not every end delivered", lambda: len(receiver.accepted()) >= 30, 120
        )
    outboxes = {keys.outbox_key(g) for g in gids}
    for server in cluster.servers[: cluster.primaries]:  # an outbox written on every node
        with server.client() as node:
            here = {k for k in outboxes if cluster.primary_of(k) == server}
            added = sum(node.xinfo_stream(k)["entries-added"] for k in here)
            assert here and added >= len(here), server.port  # moved out since, so not XLEN
    bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.accepted()]
    assert sorted(b["data"]["id"] for b in bodies) == sorted(
        [*gids, *(f"wh-cluster-feed-{i}" for i in range(6))]
    )
    assert {b["type"] for b in bodies} == {"generation.finished", "stream.ended"}
    assert "Cluster" in a.log()
