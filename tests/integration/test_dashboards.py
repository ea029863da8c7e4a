"""The shipped dashboard and alert rules against a real Prometheus (the Debian package
``prometheus``), scraping a real deployment every second: a Redis of the test's own, two
front-ends (delivering webhooks to a receiver of the test's) and a worker running the
test tools (one needs an approval) with the real ``anthropic`` SDK against the local
fake Anthropic API (which answers some requests with errors).

Traffic of every kind the panels show: generations watched live on both front-ends,
late joiners (replays from Redis), a publish, webhooks delivered and one dead-lettered
(410), an approval asked and given, provider errors (one retried, one failing its
generation). Then every query of every dashboard panel must return data, and every
alert expression must be answered without an error; the dashboard is drawn
(``deploy/observability/render.py``) from the same Prometheus.

``OBSERVABILITY_PICTURE=docs/observability.png OBSERVABILITY_TRAFFIC_SECONDS=90`` also
draws the README's picture from a longer run (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.core.embedded import EmbeddedRedis
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    http_error,
    message,
    text,
    text_reply,
    tool_use,
)
from tests.support.polling import poll, until, wait_for
from tests.support.ports import free_port
from tests.support.procs import ROOT, Proc, read_sse, spawn, start_worker, wait_ready
from tests.support.prometheus import OBSERVABILITY, Prometheus, alert_rules, dashboard_queries
from tests.support.webhooks import Received, Receiver, webhook_env

TRAFFIC_SECONDS = float(os.environ.get("OBSERVABILITY_TRAFFIC_SECONDS", "6"))
PICTURE = os.environ.get("OBSERVABILITY_PICTURE")

NO_DATA_EXPECTED: dict[str, str] = {}
"""Dashboard queries allowed to answer an empty vector here, with the reason (none: the
traffic makes every panel's data)."""


@dataclass
class Observed:
    prometheus: Prometheus
    frontends: list[Proc]
    worker: Proc
    receiver: Receiver
    started: float
    ended: float


def calls_approved_add() -> list[Any]:
    """The model's turn calling approved_add (a tool that needs a person's approval)."""
    return message(
        [text(["Let me."]), tool_use("toolu_a1", "approved_add", ['{"a": 2, "b": 5}'])],
        stop_reason="tool_use",
    )


def _frontend(redis_url: str, tmp: Path, name: str, port: int, env: dict[str, str]) -> Proc:
    """A front-end started on ``port`` (the caller waits for it: several start at once)."""
    proc = spawn(
        name,
        ["-m", "broadcaster", "serve", "--port", str(port)],
        {"REDIS_URL": redis_url, "BROADCASTER_LOG_LEVEL": "info", **env},
        tmp,
        fork=True,
    )
    proc.port = port
    return proc


def _answer(got: Received) -> int:
    """410 Gone (dead-lettered at once) for the generations named dead-…, else 204."""
    return 410 if b'"id":"dead-' in got.body else 204


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observability")
    redis = EmbeddedRedis(tmp / "redis", persistent=False)
    redis.start(reuse=False)
    procs: list[Proc] = []
    prometheus: Prometheus | None = None
    try:
        with FakeAnthropicServer(api_key="test") as anthropic, Receiver(decide=_answer) as receiver:
            anthropic.set_default(text_reply([f"word{i} " for i in range(30)], chunk_delay=0.02))
            anthropic.route("approved_add", calls_approved_add())
            # Prometheus first, the processes all at once: it takes up its targets (every
            # 5 s) while they start.
            ports = [free_port() for _ in range(3)]
            prometheus = Prometheus(
                tmp,
                {
                    "broadcaster-frontend": [f"127.0.0.1:{port}" for port in ports[:2]],
                    "broadcaster-worker": [f"127.0.0.1:{ports[2]}"],
                },
            ).start()
            frontends = [
                _frontend(redis.url, tmp, f"frontend-{n}", port, webhook_env(receiver.url()))
                for n, port in enumerate(ports[:2], 1)
            ]
            procs += frontends
            worker_env = {
                "WORKER_PROVIDER": "anthropic",
                "ANTHROPIC_BASE_URL": anthropic.base_url,
                "ANTHROPIC_API_KEY": "test",
                "WORKER_RETRY_BASE_SECONDS": "0.05",
                "WORKER_METRICS_PORT": str(ports[2]),
                "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
                "TOOL_RUNS_FILE": str(tmp / "runs.jsonl"),
                "PYTHONPATH": str(ROOT),
            }
            worker = start_worker(redis.url, tmp, "worker", worker_env)
            procs.append(worker)
            for frontend in frontends:
                wait_ready(frontend)
            prometheus.wait_scraping(3)  # before any traffic: a count before the first
            # scrape of a series is no increase
            started = time.time()
            asyncio.run(_traffic([p.url for p in frontends], receiver, anthropic))
            yield Observed(prometheus, frontends, worker, receiver, started, time.time())
    finally:
        if prometheus is not None:
            prometheus.stop()
        for p in reversed(procs):
            p.stop()
        redis.stop()


async def _generation(client: httpx.AsyncClient, urls: list[str], body: dict[str, object]) -> str:
    """A generation created on the first front-end, watched live by two viewers there and
    one on the other, then read again from the start (a replay) once it ended."""
    r = await client.post(f"{urls[0]}/v1/generations", json=body)
    assert r.status_code == 202, r.text
    gid: str = r.json()["id"]
    viewers = [read_sse(client, f"{url}/v1/streams/{gid}/events") for url in (*urls, urls[0])]
    for result in await asyncio.gather(*viewers):
        assert result.status == 200 and result.done, result.raw[-500:]
    return gid


async def _approval(client: httpx.AsyncClient, url: str) -> None:
    """The fake model calls approved_add (named in the prompt); the generation waits for
    a person; the test approves and it runs to its end."""
    r = await client.post(f"{url}/v1/generations", json={"prompt": "approved_add two numbers"})
    assert r.status_code == 202, r.text
    gid = r.json()["id"]
    status = await poll(
        lambda: _status_if(client, f"{url}/v1/generations/{gid}", "waiting"),
        "the generation waiting for an approval",
        30,
        every=0.1,
    )
    # The stream stays open while it waits: read up to its last event.
    got = await read_sse(
        client, f"{url}/v1/streams/{gid}/events", stop_after=status["last_event_id"]
    )
    asked = next(e.json() for e in got.typed() if e.event == "tool-approval-request")
    await asyncio.sleep(0.3)  # a wait the histogram shows above its lowest buckets
    decide = {"approvalId": asked["approvalId"], "approved": True}
    r = await client.post(f"{url}/v1/generations/{gid}/approvals", json=decide)
    assert r.status_code == 200, r.text
    done = await read_sse(client, f"{url}/v1/streams/{gid}/events")
    assert [e.event for e in done.typed()][-1] == "finish", done.raw[-500:]


async def _traffic(urls: list[str], receiver: Receiver, anthropic: FakeAnthropicServer) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"{urls[1]}/v1/streams/feed-1/events", json={"type": "note", "n": 1})
        assert r.status_code == 201, r.text
        await _approval(client, urls[0])
        await _generation(client, urls, {"prompt": "hello there", "id": "dead-1"})
        deadline = time.monotonic() + TRAFFIC_SECONDS
        n = 0
        while True:  # each round: 3 generations, one retried after an error, one failing
            n += 1
            anthropic.route(f"retry-{n}-end", [http_error(500)])  # then the default: retried
            anthropic.route(f"fail-{n}-end", [http_error(400)])  # not retried: failed
            failed = await client.post(
                f"{urls[0]}/v1/generations", json={"prompt": f"fail-{n}-end"}
            )
            assert failed.status_code == 202, failed.text
            prompts = [f"hello there {n} 1", f"hello there {n} 2", f"retry-{n}-end"]
            await asyncio.gather(*(_generation(client, urls, {"prompt": p}) for p in prompts))
            if time.monotonic() > deadline:
                break
        await until(
            lambda: any(g.answered == 410 for g in receiver.requests),
            "the dead-1 webhook answered 410",
            30,
            every=0.1,
        )
        await poll(
            lambda: _status_if(client, f"{urls[0]}/v1/generations/{failed.json()['id']}", "failed"),
            "the generation answered 400 failed",
            30,
            every=0.1,
        )


async def _status_if(client: httpx.AsyncClient, url: str, wanted: str) -> dict[str, Any] | None:
    """The generation's status at ``url`` if it is ``wanted``, else None."""
    status: dict[str, Any] = (await client.get(url)).json()
    return status if status["status"] == wanted else None


def _empty(prometheus: Prometheus) -> dict[str, str]:
    """The dashboard queries that answer no data now (panel and query), or an error."""
    missing = {}
    for title, expr in dashboard_queries():
        answer = prometheus.query(expr)
        assert answer["status"] == "success", f"{title}: {expr}: {answer}"
        if not answer["data"]["result"] and expr not in NO_DATA_EXPECTED:
            missing[expr] = title
    return missing


def test_every_target_is_scraped(observed: Observed) -> None:
    health: dict[str, str] = {}

    def all_up() -> bool:  # a scrape that timed out on a busy machine: the next ones
        health.clear()
        health.update(observed.prometheus.targets_up())
        return len(health) == 3 and set(health.values()) == {"up"}

    wait_for("every target up", all_up, 20, every=0.5, context=lambda: str(health))


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    missing: dict[str, str] = {}

    def answered() -> bool:
        missing.clear()
        missing.update(_empty(observed.prometheus))
        return not missing

    wait_for(  # a few scrapes after the traffic, at most
        "every panel with data",
        answered,
        20,
        every=0.5,
        context=lambda: f"panels without data: {json.dumps(missing, indent=1)}",
    )


def test_every_alert_expression_is_answered(observed: Observed) -> None:
    for name, expr in alert_rules():
        answer = observed.prometheus.query(expr)
        assert answer["status"] == "success", f"{name}: {expr}: {answer}"
        assert answer["data"]["resultType"] == "vector", name
    # and Prometheus loaded the same file, with no rule in error
    rules = httpx.get(f"{observed.prometheus.url}/api/v1/rules", timeout=10).json()
    loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
    assert {r["name"] for r in loaded} == {name for name, _ in alert_rules()}
    assert all(r["health"] != "err" for r in loaded), loaded


def test_the_dashboard_renders_from_prometheus(observed: Observed, tmp_path: Path) -> None:
    out = Path(PICTURE) if PICTURE else tmp_path / "dashboard.png"
    result = subprocess.run(
        [
            sys.executable,
            str(OBSERVABILITY / "render.py"),
            f"--prometheus={observed.prometheus.url}",
            f"--minutes={(time.time() - observed.started) / 60 + 0.2:.2f}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.stat().st_size < 300_000, f"{out}: {out.stat().st_size} bytes"
