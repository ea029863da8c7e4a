"""A deliverer that died between taking an event from an outbox and moving it: another
sees it gone (its time in ``keys.WEBHOOK_DELIVERERS_KEY`` has passed) and moves the
event, at its next sweep, without waiting for the hourly reclaim."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from broadcaster.core import connection, keys
from broadcaster.webhooks import mover
from broadcaster.webhooks.deliverer import Deliverer, DeliveryConfig
from broadcaster.webhooks.metrics import WebhookMetrics
from broadcaster.webhooks.queue import DeliveryQueue
from broadcaster.webhooks.schedule import RetrySchedule
from tests.support.polling import poll, wait_for
from tests.support.procs import Proc, own_redis, start_frontend, stop_all
from tests.support.webhooks import SECRET, Receiver, webhook_env

pytestmark = pytest.mark.anyio

GHOST = "ghost-deliverer"


async def _ghost_took_an_event(redis: Any, frontend: Proc, alive_for: float) -> None:
    """The ghost: a deliverer that joined, said it runs for ``alive_for`` s more (less
    than nothing: it is gone already), and took the event from its outbox, then died
    before moving it."""
    ghost = mover.Mover(redis, DeliveryQueue(redis), GHOST)
    await ghost.ensure_groups()
    now = time.time()
    await DeliveryQueue(redis).alive(GHOST, int((now + alive_for) * 1000), int(now * 1000))
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{frontend.url}/v1/streams/wh-ghost/events"
        assert (await client.post(url, json={"type": "finish"})).status_code == 201
    taken = await ghost.read_blocking(redis, 1000)
    assert [t[0] for t in taken] == [keys.outbox_key("wh-ghost")]


@pytest.mark.parametrize(
    ("alive_for", "idle_ms"),
    [
        # Its time runs out 2 s on: the live deliverer's reclaim at start finds the entry
        # too fresh (idle less than RECLAIM_IDLE_MS), and the sweep that sees the ghost
        # gone moves it.
        (2.0, 1000),
        # Gone before the live deliverer starts, its entry read just now: seen gone at
        # once, when the entry is not yet idle long enough to be taken; the deliverer
        # reclaims again once it is (not at the hourly floor).
        (-1.0, 2000),
    ],
    ids=["seen-gone-later", "gone-before-its-read-is-idle"],
)
async def test_an_event_a_dead_deliverer_took_is_moved_once_it_is_seen_gone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    alive_for: float,
    idle_ms: int,
) -> None:
    monkeypatch.setattr(mover, "RECLAIM_IDLE_MS", idle_ms)
    server = own_redis(tmp_path / "redis")
    redis = connection.command_client(server.url)
    frontends = []
    try:
        with Receiver() as receiver:
            quiet = webhook_env(receiver.url(), BROADCASTER_WEBHOOK_DELIVERY="false")
            frontends.append(start_frontend(server.url, tmp_path, "wh-reclaim-fe", quiet))
            await _ghost_took_an_event(redis, frontends[0], alive_for)
            # A live deliverer, sweeping every 0.5 s.
            config = DeliveryConfig(
                receiver.url(), SECRET, RetrySchedule(1, 1, 600), 2.0, 4, 1.0, 0.5
            )
            metrics = WebhookMetrics(CollectorRegistry())
            caplog.set_level("INFO", "broadcaster.webhooks")
            async with Deliverer(redis, server.url, config, metrics, grace=1):
                await asyncio.to_thread(wait_for, "never moved", receiver.accepted, 30)

                async def ghost_forgotten() -> bool:
                    left = await redis.zrange(keys.WEBHOOK_DELIVERERS_KEY, 0, -1)
                    return GHOST.encode() not in left

                # Forgotten once what it read was surely reclaimed.
                await poll(ghost_forgotten, "the gone deliverer forgotten")
            [got] = receiver.accepted()
            assert got.json()["data"]["id"] == "wh-ghost"
            assert f"deliverers gone: {GHOST}" in caplog.text
            # Stopped holding nothing: it left the deliverers too.
            assert await redis.zrange(keys.WEBHOOK_DELIVERERS_KEY, 0, -1) == []
    finally:
        stop_all(frontends)
        await redis.aclose()
        server.stop()
