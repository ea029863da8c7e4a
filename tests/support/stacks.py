"""A small deployment for end-to-end tests of the worker: a Redis server of its own, a
front-end and a worker, each a real process on 127.0.0.1; and the calls a test makes of
it (create a generation, read its status, check a stream is well formed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from broadcaster.core.embedded import EmbeddedRedis
from tests.support.procs import Proc, SSEEvent, SSEResult, start_frontend, start_worker


@dataclass
class Stack:
    """A Redis server of its own, a front-end and a worker."""

    redis: EmbeddedRedis
    frontend: Proc
    worker: Proc

    @property
    def url(self) -> str:
        return self.frontend.url

    def stop(self) -> None:
        self.worker.stop()
        self.frontend.stop()
        self.redis.stop()


def start_stack(base: Path, name: str, worker_env: dict[str, str]) -> Stack:
    redis = EmbeddedRedis(base / f"{name}-redis", persistent=False)
    redis.start(reuse=False)
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, base, f"{name}-frontend"))
        procs.append(start_worker(redis.url, base, f"{name}-worker", env=worker_env))
    except BaseException:
        for p in procs:
            p.stop()
        redis.stop()
        raise
    return Stack(redis, procs[0], procs[1])


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
