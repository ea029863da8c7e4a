"""Scenario 7 of docs/reliability.md, on real processes: the model provider misbehaves.

A ``Cluster`` (one Redis, two front-ends, two workers running ``--provider anthropic`` with
the real SDK) whose ``ANTHROPIC_BASE_URL`` is the local fake Anthropic server. While
ordinary generations stream on the same workers, others meet a 429 with ``retry-after``
(once, then always), a 529, an ``event: error`` mid-stream and a stall longer than the
read timeout; then the provider goes away altogether (connection refused) and comes back.
Each fault ends as ARCHITECTURE.md ("Provider errors") says, with a useful ``errorText``;
every viewer (EventSource-like, on both front-ends) ends with every event exactly once;
the workers go on serving.

The unit-level behaviour of each error (exact event sequences, retry-after timing, the
SDK request closed on a stall) is in tests/test_worker_anthropic.py; this is the same
under concurrency, across processes and viewers.

The same scenario runs against the fake OpenAI server with workers serving ``openai``:
its 429s and 5xx, an error object mid-stream, a stream cut before its ``finish_reason``
and a stall end the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from broadcaster.core import keys
from tests.support import fake_openai as oai
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    http_error,
    sse_error,
    stall,
    text_reply,
)
from tests.support.faults import (
    Cluster,
    Viewer,
    create_generation,
    report,
    stored_events,
    verdict,
    wait_status,
)

pytestmark = pytest.mark.anyio

RETRIES = 2
READ_TIMEOUT_S = 4.0  # a stall; a loaded machine may take seconds to answer at all


def provider_env(base_url: str) -> dict[str, str]:
    return {
        "WORKER_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test",
        "WORKER_MERGE_MS": "0",
        "WORKER_CONCURRENCY": "8",
        "WORKER_PROVIDER_RETRIES": str(RETRIES),
        "WORKER_RETRY_BASE_SECONDS": "0.05",
        "WORKER_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_S),
    }


def normal_reply(i: int) -> list[Any]:
    """About 1.5 s of output: it overlaps the faults on the same workers."""
    return text_reply([f"n{i}-{k} " for k in range(30)], chunk_delay=0.05)


PARTIAL = text_reply(["Par", "tial ", "answer"])[:5]
"""message_start, content_block_start and three deltas: output the viewers have seen."""

FAULTS: dict[str, tuple[list[list[Any]], str, tuple[str, ...]]] = {
    # marker: (scripts, final status, what errorText must say)
    "rate-limited-once": (
        [[http_error(429)], text_reply(["fine ", "after ", "all"])],
        "completed",
        (),
    ),
    "rate-limited-always": (
        [[http_error(429)]] * (RETRIES + 1),
        "failed",
        ("rate limited (429)", "rate_limit_error"),
    ),
    "overloaded-always": (
        [[http_error(529)]] * (RETRIES + 1),
        "failed",
        ("overloaded (529)", "overloaded_error"),
    ),
    "error-mid-stream": (
        [[*PARTIAL, sse_error("overloaded_error", "Overloaded")]],
        "failed",
        ("mid-stream", "overloaded_error", "Overloaded"),
    ),
    "stall": ([[*PARTIAL, stall()]], "failed", ("timed out",)),
}


async def watch(
    client: httpx.AsyncClient, cluster: Cluster, gids: list[str], within: float
) -> list[Viewer]:
    """Two EventSource-like viewers per stream, one starting on each front-end."""
    a, b = cluster.urls
    viewers = [Viewer(urls, gid, patience=30) for gid in gids for urls in ([a, b], [b, a])]
    with anyio.fail_after(within):
        async with anyio.create_task_group() as tg:
            for v in viewers:
                tg.start_soon(v.run, client)
    return viewers


def check_exact(cluster: Cluster, viewers: list[Viewer], title: str, **figures: object) -> None:
    with cluster.client() as r:
        verdicts = [verdict(v, stored_events(r, v.stream_id)) for v in viewers]
    report(title, verdicts, **figures)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v


async def test_provider_faults_end_as_documented_and_workers_go_on(tmp_path: Path) -> None:
    srv = FakeAnthropicServer().start()
    port = srv.port
    try:
        with Cluster(tmp_path, worker_env=provider_env(srv.base_url)) as cluster:
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
                base = cluster.urls[0]
                for marker, (scripts, _, _) in FAULTS.items():
                    srv.route(marker, *scripts)
                for i in range(10):
                    srv.route(f"normal-{i}", normal_reply(i))

                started = time.monotonic()
                gids = {
                    name: await create_generation(client, base, f"{name}: go")
                    for name in [*FAULTS, *(f"normal-{i}" for i in range(10))]
                }
                viewers = await watch(client, cluster, list(gids.values()), within=60)
                elapsed = time.monotonic() - started
                check_exact(cluster, viewers, "provider faults", seconds=f"{elapsed:.1f}")

                for name, gid in gids.items():
                    status, says = FAULTS[name][1:] if name in FAULTS else ("completed", ())
                    body = await wait_status(client, base, gid, {status}, within=5)
                    if name in FAULTS:
                        print(f"  {name}: {body['status']}, errorText {body['error']!r}")
                    for words in says:
                        assert words in (body["error"] or ""), (name, body)
                    received = next(v for v in viewers if v.stream_id == gid).received
                    last = received[-1]
                    if status == "failed":
                        assert last.type == "error", (name, last)
                        assert json.loads(last.data)["errorText"] == body["error"]
                    else:
                        assert last.type == "finish" and body["error"] is None, (name, body)
                        # a 429 before any output stays invisible: no data-retry, no error
                        assert {e.type for e in received}.isdisjoint({"data-retry", "error"})
                text = (await wait_status(client, base, gids["error-mid-stream"], {"failed"}))[
                    "text"
                ]
                assert text == "Partial answer"

                # The provider goes away: connections are refused.
                srv.stop()
                gid = await create_generation(client, base, "refused: anyone there?")
                viewers = await watch(client, cluster, [gid], within=30)
                body = await wait_status(client, base, gid, {"failed"}, within=5)
                assert body["error"].startswith("cannot reach the model provider"), body
                print(f"  refused: {body['status']}, errorText {body['error']!r}")
                check_exact(cluster, viewers, "provider refuses connections")

                # It comes back at the same address: both workers serve again.
                srv = FakeAnthropicServer(port=port).start()
                for i in range(6):
                    srv.route(f"back-{i}", normal_reply(i))
                gids_back = [
                    await create_generation(client, cluster.urls[i % 2], f"back-{i}: go")
                    for i in range(6)
                ]
                viewers = await watch(client, cluster, gids_back, within=30)
                for gid in gids_back:
                    await wait_status(client, base, gid, {"completed"}, within=5)
                check_exact(cluster, viewers, "provider back")

            for worker in cluster.workers:
                assert worker.alive(), worker.log()[-2000:]
                assert "Traceback" not in worker.log(), worker.log()[-3000:]
            # Faults and ordinary generations shared both workers (15 jobs, 8 per worker).
            with cluster.client() as r:
                owners = {r.hget(keys.meta_key(gid), "owner") for gid in gids.values()}
            pids = {int(o.decode().split("-")[-2]) for o in owners if o}
            assert pids == {w.pid for w in cluster.workers}, (pids, owners)
    finally:
        srv.stop()
    assert srv.errors == []


OPENAI_PARTIAL = oai.reply(text=["Par", "tial ", "answer"])[:4]
"""The role chunk and three content deltas: output the viewers have seen."""

OPENAI_FAULTS: dict[str, tuple[list[list[Any]], str, tuple[str, ...]]] = {
    "rate-limited-once": (
        [[oai.http_error(429)], oai.reply(text=["fine ", "after ", "all"])],
        "completed",
        (),
    ),
    "rate-limited-always": (
        [[oai.http_error(429)]] * (RETRIES + 1),
        "failed",
        ("rate limited (429)", "rate_limit_exceeded"),
    ),
    "unavailable-always": (
        [[oai.http_error(503)]] * (RETRIES + 1),
        "failed",
        ("(503)", "server_error"),
    ),
    "error-mid-stream": (
        [[*OPENAI_PARTIAL, oai.stream_error("engine overloaded")]],
        "failed",
        ("mid-stream", "engine overloaded"),
    ),
    "cut-short": ([OPENAI_PARTIAL], "failed", ("without a finish_reason",)),
    "stall": ([[*OPENAI_PARTIAL, oai.stall()]], "failed", ("timed out",)),
}


def openai_normal_reply(i: int) -> list[Any]:
    """About 1.5 s of output, as ``normal_reply``."""
    script = oai.reply(text=[f"n{i}-{k} " for k in range(30)])
    return [step for frame in script for step in (oai.delay(0.05), frame)]


async def test_openai_faults_end_as_documented(tmp_path: Path) -> None:
    with oai.FakeOpenAIServer() as srv:
        env = {
            **provider_env("http://127.0.0.1:1"),
            "WORKER_PROVIDERS": "openai",
            "OPENAI_BASE_URL": srv.base_url,
            "OPENAI_API_KEY": "test",
        }
        with Cluster(tmp_path, worker_env=env) as cluster:
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
                base = cluster.urls[0]
                for marker, (scripts, _, _) in OPENAI_FAULTS.items():
                    srv.route(marker, *scripts)
                for i in range(6):
                    srv.route(f"normal-{i}", openai_normal_reply(i))
                names = [*OPENAI_FAULTS, *(f"normal-{i}" for i in range(6))]
                gids = {
                    name: await create_generation(client, base, f"{name}: go", provider="openai")
                    for name in names
                }
                viewers = await watch(client, cluster, list(gids.values()), within=60)
                check_exact(cluster, viewers, "openai provider faults")
                for name, gid in gids.items():
                    status, says = (
                        OPENAI_FAULTS[name][1:] if name in OPENAI_FAULTS else ("completed", ())
                    )
                    body = await wait_status(client, base, gid, {status}, within=5)
                    for words in says:
                        assert words in (body["error"] or ""), (name, body)
                    received = next(v for v in viewers if v.stream_id == gid).received
                    if status == "completed":
                        assert {e.type for e in received}.isdisjoint({"data-retry", "error"})
                    else:
                        assert received[-1].type == "error", (name, received[-1])
                partial = await wait_status(client, base, gids["cut-short"], {"failed"})
                assert partial["text"] == "Partial answer"
            for worker in cluster.workers:
                assert worker.alive(), worker.log()[-2000:]
                assert "Traceback" not in worker.log(), worker.log()[-3000:]
    assert srv.errors == []
