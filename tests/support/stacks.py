"""A small deployment for end-to-end tests of the worker: a Redis server of its own, a
front-end and a worker, each a real process on 127.0.0.1; and the calls a test makes of
it (create a generation, read its status, check a stream is well formed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support.procs import Proc, SSEEvent, SSEResult, start_frontend, start_worker, tools_env


@dataclass
class Stack:
    """A Redis server of its own, a front-end and a worker; the worker's Prometheus port
    when it was started with one (``start_stack(..., metrics=True)``), else 0."""

    redis: EmbeddedRedis
    frontend: Proc
    worker: Proc
    metrics_port: int = 0

    @property
    def url(self) -> str:
        return self.frontend.url

    async def provider_errors(self) -> dict[str, float]:
        """The worker's ``worker_provider_errors_total``, by kind."""
        assert self.metrics_port, "start the stack with metrics=True"
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return {
            sample.labels["kind"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "worker_provider_errors"
            for sample in family.samples
            if sample.name == "worker_provider_errors_total"
        }

    def stop(self) -> None:
        self.worker.stop()
        self.frontend.stop()
        self.redis.stop()


def start_stack(
    base: Path, name: str, worker_env: dict[str, str], *, metrics: bool = False
) -> Stack:
    """Start a stack; with ``metrics`` its worker serves Prometheus on a port of its own."""
    redis = EmbeddedRedis(base / f"{name}-redis", persistent=False)
    redis.start(reuse=False)
    procs: list[Proc] = []
    metrics_port = free_port() if metrics else 0
    env = {**worker_env, "WORKER_METRICS_PORT": str(metrics_port)} if metrics else worker_env
    try:
        procs.append(start_frontend(redis.url, base, f"{name}-frontend"))
        procs.append(start_worker(redis.url, base, f"{name}-worker", env=env))
    except BaseException:
        for p in procs:
            p.stop()
        redis.stop()
        raise
    return Stack(redis, procs[0], procs[1], metrics_port)


def anthropic_env(base_url: str, **extra: str) -> dict[str, str]:
    return {
        "WORKER_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test",
        "WORKER_MERGE_MS": "0",
        "WORKER_RETRY_BASE_SECONDS": "0.05",
        "WORKER_READ_TIMEOUT_SECONDS": "1",
        **extra,
    }


def responses_env(base_url: str, root: Path) -> dict[str, str]:
    """A worker serving ``openai`` on the Responses API at ``base_url``, running the test
    tools (``tests/support/worker_tools.py``)."""
    return {
        **tools_env(root),
        "WORKER_PROVIDER": "openai",
        "WORKER_OPENAI_API": "responses",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "test",
        "WORKER_PROVIDER_RETRIES": "1",
        "WORKER_RETRY_BASE_SECONDS": "0.05",
        "WORKER_READ_TIMEOUT_SECONDS": "5",
        "WORKER_CANCEL_POLL_SECONDS": "0.05",
    }


async def create(client: httpx.AsyncClient, base: str, **body: Any) -> str:
    r = await client.post(base + "/v1/generations", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def status(client: httpx.AsyncClient, base: str, gid: str) -> dict[str, Any]:
    r = await client.get(f"{base}/v1/generations/{gid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def assert_well_formed(result: SSEResult) -> list[SSEEvent]:
    """Seq 1..N with no gap, one terminal event at the end, then [DONE]."""
    assert result.status == 200
    assert result.ids == list(range(1, len(result.ids) + 1))
    typed = result.typed()
    assert all(e.json()["type"] == e.event for e in typed)
    assert [e.event for e in typed if e.event in ("finish", "error", "abort")] == [typed[-1].event]
    assert result.done
    return typed
