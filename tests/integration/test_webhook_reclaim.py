"""A deliverer that died between taking an event from an outbox and moving it: another
sees it gone (its time in ``keys.WEBHOOK_DELIVERERS_KEY`` has passed) and moves the
event, at its next sweep, without waiting for the hourly reclaim."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from broadcaster.core import connection, keys
from broadcaster.webhooks import mover
from broadcaster.webhooks.deliverer import Deliverer, DeliveryConfig
from broadcaster.webhooks.metrics import WebhookMetrics
from broadcaster.webhooks.queue import DeliveryQueue
from broadcaster.webhooks.schedule import RetrySchedule
from tests.support.procs import own_redis, start_frontend, stop_all
from tests.support.webhooks import SECRET, Receiver, wait_until, webhook_env

pytestmark = pytest.mark.anyio

GHOST = "ghost-deliverer"


async def test_an_event_a_dead_deliverer_took_is_moved_once_it_is_seen_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mover, "RECLAIM_IDLE_MS", 1000)
    server = own_redis(tmp_path / "redis")
    redis = connection.command_client(server.url)
    frontends = []
    try:
        with Receiver() as receiver:
            quiet = webhook_env(receiver.url(), BROADCASTER_WEBHOOK_DELIVERY="false")
            frontends.append(start_frontend(server.url, tmp_path, "wh-reclaim-fe", quiet))
            # The ghost: a deliverer that joined, said it runs for 2 s more, and took the
            # event from its outbox, then died before moving it.
            ghost = mover.Mover(redis, DeliveryQueue(redis), GHOST)
            await ghost.ensure_groups()
            now = time.time()
            await DeliveryQueue(redis).alive(GHOST, int((now + 2) * 1000), int(now * 1000))
            async with httpx.AsyncClient(timeout=30) as client:
                url = f"{frontends[0].url}/v1/streams/wh-ghost/events"
                assert (await client.post(url, json={"type": "finish"})).status_code == 201
            taken = await ghost.read_blocking(redis, 1000)
            assert [t[0] for t in taken] == [keys.outbox_key("wh-ghost")]
            # A live deliverer, sweeping every 0.5 s: its reclaim at start finds the entry
            # too fresh (idle less than RECLAIM_IDLE_MS); the ghost's time runs out 2 s
            # on, and the next sweep moves the event.
            config = DeliveryConfig(
                receiver.url(), SECRET, RetrySchedule(1, 1, 600), 2.0, 4, 1.0, 0.5
            )
            metrics = WebhookMetrics(CollectorRegistry())
            caplog.set_level("INFO", "broadcaster.webhooks")
            async with Deliverer(redis, server.url, config, metrics, grace=1):
                await asyncio.to_thread(wait_until, receiver.accepted, 30, "never moved")
                left = await redis.zrange(keys.WEBHOOK_DELIVERERS_KEY, 0, -1)
            [got] = receiver.accepted()
            assert got.json()["data"]["id"] == "wh-ghost"
            assert f"deliverers gone: {GHOST}" in caplog.text
            assert GHOST.encode() not in left  # forgotten once its outboxes were reclaimed
            # Stopped holding nothing: it left the deliverers too.
            assert await redis.zrange(keys.WEBHOOK_DELIVERERS_KEY, 0, -1) == []
    finally:
        stop_all(frontends)
        await redis.aclose()
        server.stop()
