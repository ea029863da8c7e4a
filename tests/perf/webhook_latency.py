"""How soon a deliverer sends a fresh event, and how close to its due time a retry.

``python -m tests.perf.webhook_latency [--events N] [--tree PATH]``: a Redis of its own,
one front-end with webhooks configured (the deployment's defaults but a retry wait of at
most 2 s) and a receiver in this process. Fresh: a feed ends (``POST .../events``,
``finish``), and the time from that request to the webhook's arrival. Retry: the
receiver answers the first attempt of another feed's webhook 500; the lateness of the
second attempt is its arrival minus (the first's arrival + the wait the schedule gives
that delivery). One event at a time. ``--tree`` runs the front-end from another checkout
(its ``PYTHONPATH``), to compare with the code before a change. Prints figures; asserts
nothing about them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis as redis_sync

from broadcaster.core import keys
from broadcaster.webhooks.schedule import RetrySchedule
from tests.support.polling import wait_for
from tests.support.procs import own_redis, start_frontend
from tests.support.webhooks import Received, Receiver, webhook_env

RETRY_BASE = 2.0
SCHEDULE = RetrySchedule(RETRY_BASE, RETRY_BASE, 600.0)


class Clocked:
    """The receiver's verdicts: a feed named ``retry-…`` fails its first attempt; every
    arrival's time is kept by webhook-id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}

    def __call__(self, got: Received) -> int:
        now = time.monotonic()
        with self.lock:
            seen = self.arrivals.setdefault(got.webhook_id, [])
            seen.append(now)
            first = len(seen) == 1
        return 500 if first and got.json()["data"]["id"].startswith("retry-") else 200

    def times(self, stream_id: str, receiver: Receiver) -> list[float]:
        for r in receiver.at():
            if r.json()["data"]["id"] == stream_id:
                with self.lock:
                    return list(self.arrivals[r.webhook_id])
        return []


def _figures(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return (
        f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, "
        f"max {ms[-1]:.1f} ms"
    )


async def run(events: int, tree: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = own_redis(directory / "redis")
        clocked = Clocked()
        try:
            with Receiver(decide=clocked) as receiver:
                env = webhook_env(
                    receiver.url(),
                    BROADCASTER_WEBHOOK_RETRY_BASE_SECONDS=str(RETRY_BASE),
                    BROADCASTER_WEBHOOK_RETRY_MAX_SECONDS=str(RETRY_BASE),
                    BROADCASTER_WEBHOOK_POLL_SECONDS="1",
                    BROADCASTER_WEBHOOK_TIMEOUT_SECONDS="10",
                )
                if tree is not None:
                    env["PYTHONPATH"] = str(tree)
                fe = start_frontend(server.url, directory, "wh-latency", env)
                client = redis_sync.Redis.from_url(server.url)
                try:
                    await asyncio.sleep(2)  # its start-up rounds done
                    fresh, late = await _measure(fe.url, events, receiver, clocked, client)
                finally:
                    client.close()
                    fe.stop()
        finally:
            server.stop()
    print(f"front-end from {tree or 'this tree'}")
    print(_figures("fresh event: ending request sent -> webhook arrived", fresh))
    print(_figures("due retry: second attempt arrived - (first + its wait)", late))


async def _measure(
    url: str, events: int, receiver: Receiver, clocked: Clocked, client: redis_sync.Redis
) -> tuple[list[float], list[float]]:
    fresh: list[float] = []
    late: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(events):
            stream_id = f"fresh-{i}"
            sent = time.monotonic()
            r = await http.post(f"{url}/v1/streams/{stream_id}/events", json={"type": "finish"})
            assert r.status_code == 201, r.text
            await asyncio.to_thread(
                wait_for, "no webhook", lambda s=stream_id: clocked.times(s, receiver), 30
            )
            fresh.append(clocked.times(stream_id, receiver)[0] - sent)
        for i in range(events):
            stream_id = f"retry-{i}"
            r = await http.post(f"{url}/v1/streams/{stream_id}/events", json={"type": "finish"})
            assert r.status_code == 201, r.text
            await asyncio.to_thread(
                wait_for, "no attempt", lambda s=stream_id: clocked.times(s, receiver), 30
            )
            rows = client.xpending_range(
                keys.WEBHOOK_DELIVERIES_KEY, keys.WEBHOOK_GROUP, "-", "+", 1
            )
            entry_id = rows[0]["message_id"].decode()
            await asyncio.to_thread(
                wait_for, "no retry", lambda s=stream_id: len(clocked.times(s, receiver)) >= 2, 60
            )
            first, second = clocked.times(stream_id, receiver)[:2]
            late.append(second - first - SCHEDULE.wait(1, entry_id))
    return fresh, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--tree", type=Path, default=None)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.tree))


if __name__ == "__main__":
    main()
