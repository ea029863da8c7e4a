"""Prometheus metrics of the front-end and the worker, and structured logs that name the
stream, on real processes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support.load import sample
from tests.support.procs import read_sse, start_frontend, start_worker

pytestmark = pytest.mark.anyio


async def test_metrics_and_json_logs(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    metrics_port = free_port()
    fe = start_frontend(url, tmp_path, "obs-frontend")
    worker = start_worker(
        url,
        tmp_path,
        "obs-worker",
        env={
            "WORKER_METRICS_PORT": str(metrics_port),
            "WORKER_LOG_FORMAT": "json",
        },
    )
    try:
        async with httpx.AsyncClient(base_url=fe.url, timeout=30) as c:
            sid = "obs-" + secrets.token_hex(4)
            for i in range(5):
                await c.post(f"/v1/streams/{sid}/events", json={"type": "data-n", "i": i})
            await c.post(f"/v1/streams/{sid}/events", json={"type": "finish"})
            for _ in range(3):
                r = await read_sse(c, f"/v1/streams/{sid}/events")
                assert r.ids == [1, 2, 3, 4, 5, 6]
            r = await c.post("/v1/generations", json={"prompt": "count me", "max_tokens": 8})
            gid = r.json()["id"]
            live = await read_sse(c, f"/v1/streams/{gid}/events")
            assert live.done
            text = (await c.get("/metrics")).text
            assert sample(text, "broadcaster_events_appended_total") == 6
            assert sample(text, "broadcaster_events_replayed_total") >= 18
            assert sample(text, "broadcaster_events_delivered_total") >= 1
            assert sample(text, "broadcaster_sse_connections") == 0
            # The worker acks its job just after appending the terminal event, which the
            # viewer may have read already: the queue empties within moments, not at once.
            for _ in range(50):
                if sample(text, "broadcaster_generations_queued") == 0:
                    break
                await asyncio.sleep(0.1)
                text = (await c.get("/metrics")).text
            assert sample(text, "broadcaster_generations_queued") == 0
            assert sample(text, "broadcaster_redis_read_seconds_count") >= 3

        deadline = time.monotonic() + 10
        while True:
            async with httpx.AsyncClient(timeout=5) as wc:
                wtext = (await wc.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            try:
                assert (
                    sample(wtext, "worker_generations_finished_total", 'outcome="completed"') == 1
                )
                break
            except AssertionError:
                assert time.monotonic() < deadline, wtext
                await asyncio.sleep(0.1)
        assert sample(wtext, "worker_generations_running") == 0
        assert sample(wtext, "worker_tokens_total", 'direction="output"') > 0
        assert sample(wtext, "worker_events_appended_total") == live.ids[-1]
    finally:
        fe.stop()
        worker.stop()
        server.stop()
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert lines, worker.log()
    about = [x for x in lines if x.get("stream_id") == gid]
    assert any("attempt 1" in x["msg"] for x in about), lines
    assert all({"ts", "level", "logger", "msg"} <= x.keys() for x in lines)
