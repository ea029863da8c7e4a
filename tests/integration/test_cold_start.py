"""Cold starts and restarts of every worker: a request for a provider the deployment serves
is accepted and queued while no worker is alive, taken when one comes, and ended with
``error`` only after the queued timeout; a provider the deployment does not serve is
still refused (422). Real front-ends and workers on a Redis of the test's own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.polling import poll
from tests.support.procs import (
    ROOT,
    Proc,
    own_redis,
    read_sse,
    run_python,
    spawn,
    start_frontend,
    start_worker,
)

pytestmark = pytest.mark.anyio

FAST_WORKER = {"WORKER_LEASE_SECONDS": "2", "WORKER_FAKE_DELAY_MS": "5"}
AFTER_LAPSE = 3
"""Requests made once no worker is advertised, before one is started again."""


async def _create(client: httpx.AsyncClient, url: str, **body: object) -> httpx.Response:
    return await client.post(url + "/v1/generations", json={"prompt": "cold start", **body})


async def _ends_with(client: httpx.AsyncClient, url: str, gid: str) -> tuple[str, dict]:
    result = await read_sse(client, f"{url}/v1/streams/{gid}/events")
    assert result.status == 200, result.raw
    last = result.typed()[-1]
    return str(last.event), last.json()


async def test_a_request_made_before_any_worker_is_queued_and_runs_when_one_comes(
    tmp_path: Path,
) -> None:
    redis = own_redis(tmp_path / "redis")
    frontend = start_frontend(redis.url, tmp_path, "cold-frontend")
    worker: Proc | None = None
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # A fresh deployment: no worker has ever advertised anything.
            ready = (await client.get(frontend.url + "/readyz")).json()
            assert ready["providers"] == {}
            r = await _create(client, frontend.url)
            assert r.status_code == 202, r.text
            gid = r.json()["id"]
            # A provider that is neither the default nor ever served: refused.
            refused = await _create(client, frontend.url, provider="openai")
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"] == "provider_unavailable"
            # The worker starts after the request, as when both start together.
            worker = start_worker(redis.url, tmp_path, "cold-worker", FAST_WORKER)
            event, _ = await asyncio.wait_for(_ends_with(client, frontend.url, gid), 30)
            assert event == "finish"
            status = (await client.get(f"{frontend.url}/v1/generations/{gid}")).json()
            assert status["status"] == "completed"
            ready = (await client.get(frontend.url + "/readyz")).json()
            assert ready["providers"]["anthropic"]["live_workers"] is True
    finally:
        if worker is not None:
            worker.stop()
        frontend.stop()
        redis.stop()


async def test_every_worker_killed_and_restarted_later_runs_what_was_asked_meanwhile(
    tmp_path: Path,
) -> None:
    """Every worker is killed with SIGKILL mid-generation and only restarted once its
    advertisement (three leases) has lapsed, requests coming all along and after: the
    generations running when it died and those requested while no worker lived all
    complete."""
    redis = own_redis(tmp_path / "redis")
    frontend = start_frontend(redis.url, tmp_path, "restart-frontend")
    slow = {**FAST_WORKER, "WORKER_FAKE_DELAY_MS": "40"}
    workers = [start_worker(redis.url, tmp_path, f"restart-worker-{i}", slow) for i in (1, 2)]
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            running = [(await _create(client, frontend.url)).json()["id"] for _ in range(4)]
            await asyncio.sleep(0.5)  # mid-generation
            for w in workers:
                w.stop(signal.SIGKILL)
            requested: list[str] = []

            async def request() -> None:
                r = await _create(client, frontend.url)
                assert r.status_code == 202, r.text
                requested.append(r.json()["id"])

            async def lapsed() -> bool:
                await request()
                ready = (await client.get(frontend.url + "/readyz")).json()
                return ready["providers"]["anthropic"]["live_workers"] is False

            await poll(lapsed, "the killed workers' advertisement lapsed", 20, every=1)
            for _ in range(AFTER_LAPSE):
                await asyncio.sleep(1)
                await request()
            workers = [
                start_worker(redis.url, tmp_path, f"restart-worker-again-{i}", slow) for i in (1, 2)
            ]
            ends = await asyncio.wait_for(
                asyncio.gather(*(_ends_with(client, frontend.url, g) for g in running + requested)),
                90,
            )
            assert [e for e, _ in ends] == ["finish"] * len(running + requested), ends
            assert len(requested) > AFTER_LAPSE  # and some while it was still advertised
    finally:
        for w in workers:
            w.stop()
        frontend.stop()
        redis.stop()


async def test_a_generation_no_worker_takes_ends_with_error_after_the_queued_timeout(
    tmp_path: Path,
) -> None:
    redis = own_redis(tmp_path / "redis")
    frontend = start_frontend(
        redis.url, tmp_path, "timeout-frontend", {"BROADCASTER_QUEUED_TIMEOUT_SECONDS": "2"}
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await _create(client, frontend.url)
            assert r.status_code == 202, r.text
            gid = r.json()["id"]
            started = time.monotonic()
            event, data = await asyncio.wait_for(_ends_with(client, frontend.url, gid), 20)
            waited = time.monotonic() - started
            assert event == "error"
            assert "no worker took this generation within 2 s" in data["errorText"]
            status = (await client.get(f"{frontend.url}/v1/generations/{gid}")).json()
            assert status["status"] == "failed"
            print(f"queued timeout 2 s: ended after {waited:.1f} s")
    finally:
        frontend.stop()
        redis.stop()


async def test_a_generation_whose_worker_died_ends_after_the_queued_timeout(
    tmp_path: Path,
) -> None:
    """The worker holding it is killed and no other comes: its lease (60 s) would make a
    new worker wait; the queued timeout (3 s) ends it for the viewers."""
    redis = own_redis(tmp_path / "redis")
    frontend = start_frontend(
        redis.url, tmp_path, "dead-frontend", {"BROADCASTER_QUEUED_TIMEOUT_SECONDS": "3"}
    )
    worker = start_worker(
        redis.url,
        tmp_path,
        "dead-worker",
        {"WORKER_LEASE_SECONDS": "60", "WORKER_FAKE_DELAY_MS": "200"},
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gid = (await _create(client, frontend.url)).json()["id"]
            first = await read_sse(client, f"{frontend.url}/v1/streams/{gid}/events", stop_after=2)
            assert first.status == 200
            worker.stop(signal.SIGKILL)
            event, data = await asyncio.wait_for(_ends_with(client, frontend.url, gid), 30)
            assert event == "error"
            assert "its worker stopped" in data["errorText"]
    finally:
        worker.stop()
        frontend.stop()
        redis.stop()


async def test_a_provider_the_deployment_stopped_serving_can_be_forgotten(
    tmp_path: Path,
) -> None:
    redis = own_redis(tmp_path / "redis")
    frontend = start_frontend(redis.url, tmp_path, "forget-frontend")
    worker = start_worker(redis.url, tmp_path, "forget-worker", FAST_WORKER)  # fake: serves all
    try:
        worker.stop()
        async with httpx.AsyncClient(timeout=30) as client:
            served = await _create(client, frontend.url, provider="openai", id="once-served")
            assert served.status_code == 202, served.text  # ever advertised: queued
            listed = _cli(redis.url, "providers")
            assert "openai" in listed.stdout and "anthropic" in listed.stdout, listed
            forgot = _cli(redis.url, "providers", "--forget", "openai")
            assert forgot.returncode == 0, forgot
            refused = await _create(client, frontend.url, provider="openai")
            assert refused.status_code == 422, refused.text
            unknown = _cli(redis.url, "providers", "--forget", "openai")
            assert unknown.returncode == 1
            # The default provider is served whatever was forgotten.
            assert (await _create(client, frontend.url)).status_code == 202
    finally:
        worker.stop()
        frontend.stop()
        redis.stop()


async def test_configured_providers_decide_alone(tmp_path: Path) -> None:
    redis = own_redis(tmp_path / "redis")
    env = {"BROADCASTER_PROVIDERS": "openai", "BROADCASTER_DEFAULT_PROVIDER": "openai"}
    frontend = start_frontend(redis.url, tmp_path, "configured-frontend", env)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await _create(client, frontend.url)).status_code == 202
            refused = await _create(client, frontend.url, provider="anthropic")
            assert refused.status_code == 422, refused.text
        bad = spawn(
            "bad-providers",
            ["-m", "broadcaster", "serve", "--port", "1"],
            {"REDIS_URL": redis.url, "BROADCASTER_PROVIDERS": "anthropic,Gemini!"},
            tmp_path,
            fork=True,
        )
        assert bad.popen.wait(20) != 0
        assert "not a provider name: ['Gemini!']" in bad.log()
    finally:
        frontend.stop()
        redis.stop()


def _cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        ["-m", "broadcaster", *args],
        30,
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
