"""A small deployment for end-to-end tests of the worker: a Redis server of its own, a
front-end and a worker, each a real process on 127.0.0.1; and the calls a test makes of
it (create a generation, read its status, check a stream is well formed)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support.fake_anthropic import FakeAnthropicServer
from tests.support.nginx import Nginx, find_nginx
from tests.support.procs import (
    Proc,
    SSEEvent,
    SSEResult,
    own_redis,
    start_frontend,
    start_worker,
    tools_env,
)


@dataclass
class Stack:
    """A Redis server of its own, its front-ends (one unless asked for more; nginx before
    them when asked) and a worker (none when started without a worker env). Optional
    parts are empty unless asked for: the worker's Prometheus port
    (``start_stack(..., metrics=True)``), the fake Anthropic server its worker calls and
    its folder (``anthropic_stack``)."""

    redis: EmbeddedRedis
    frontends: list[Proc]
    worker: Proc | None
    metrics_port: int = 0
    nginx: Nginx | None = None
    anthropic: FakeAnthropicServer | None = None
    root: Path | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    """What ``add_worker`` starts a worker with (``anthropic_stack`` sets it)."""
    more_workers: list[Proc] = field(default_factory=list)
    """The workers ``add_worker`` started, stopped with the stack."""

    @property
    def frontend(self) -> Proc:
        return self.frontends[0]

    @property
    def url(self) -> str:
        """Where a client goes: nginx when there is one, else the front-end."""
        return self.nginx.url if self.nginx is not None else self.frontend.url

    @property
    def api(self) -> str:
        """The chat API."""
        return f"{self.url}/v1/chat"

    @property
    def model(self) -> FakeAnthropicServer:
        """The fake Anthropic server (a stack ``anthropic_stack`` made)."""
        assert self.anthropic is not None, "start the stack with anthropic_stack"
        return self.anthropic

    @property
    def procs(self) -> list[Proc]:
        first = [self.worker] if self.worker is not None else []
        return [*self.frontends, *first, *self.more_workers]

    def add_worker(self) -> Proc:
        """Another worker, as the stack's would be (a test that kills workers starts
        the next one)."""
        assert self.root is not None, "start the stack with anthropic_stack"
        name = f"worker-{len(self.more_workers) + 1}"
        proc = start_worker(self.redis.url, self.root, name, env=self.worker_env)
        self.more_workers.append(proc)
        return proc

    def logs(self, tail: int = 4000) -> str:
        """The end of each process's log, for a failure's message."""
        return "\n".join(f"{p.name} log:\n{p.log()[-tail:]}" for p in self.procs)

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
        if self.nginx is not None:
            self.nginx.stop()
        for worker in [*([self.worker] if self.worker is not None else []), *self.more_workers]:
            worker.stop()
        for fe in self.frontends:
            fe.stop()
        self.redis.stop()


def start_stack(
    base: Path,
    name: str,
    worker_env: dict[str, str] | None,
    *,
    metrics: bool = False,
    frontend_env: dict[str, str] | None = None,
    frontends: int = 1,
    nginx: bool = False,
) -> Stack:
    """Start a stack: ``frontends`` front-ends with ``frontend_env`` (named
    ``{name}-frontend``, or ``{name}-frontend-{i}`` when there are several), nginx before
    them if ``nginx``, and a worker with ``worker_env`` unless it is None; with ``metrics``
    the worker serves Prometheus on a port of its own. What started is stopped if a part
    fails to start."""
    redis = own_redis(base / f"{name}-redis")
    stack = Stack(redis, [], None, free_port() if metrics else 0)
    try:
        for i in range(1, frontends + 1):
            fe_name = f"{name}-frontend" + (f"-{i}" if frontends > 1 else "")
            stack.frontends.append(start_frontend(redis.url, base, fe_name, frontend_env))
        if nginx:
            ports = [fe.port for fe in stack.frontends if fe.port is not None]
            stack.nginx = Nginx(find_nginx(), base / f"{name}-nginx", free_port(), ports)
            stack.nginx.start()
        if worker_env is not None:
            env = dict(worker_env)
            if metrics:
                env["WORKER_METRICS_PORT"] = str(stack.metrics_port)
            stack.worker = start_worker(redis.url, base, f"{name}-worker", env=env)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def anthropic_stack(
    base: Path,
    worker_env: dict[str, str],
    frontend_env: dict[str, str] | None = None,
    *,
    frontends: int = 1,
    nginx: bool = False,
    worker: bool = True,
) -> Iterator[Stack]:
    """A stack whose worker serves a fake Anthropic server of its own (``stack.model``),
    with ``worker_env`` and ``frontend_env`` on top (``frontends`` and ``nginx`` as
    ``start_stack`` takes them; with ``worker=False`` no worker until the test calls
    ``add_worker``); stopped by pid at the end, when the fake server must have seen no
    malformed request."""
    with FakeAnthropicServer(api_key="test") as anthropic:
        env = {
            "WORKER_PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": anthropic.base_url,
            "ANTHROPIC_API_KEY": "test",
            **worker_env,
        }
        stack = start_stack(
            base,
            "chat",
            env if worker else None,
            frontend_env=frontend_env,
            frontends=frontends,
            nginx=nginx,
        )
        stack.anthropic, stack.root, stack.worker_env = anthropic, base, env
        try:
            yield stack
        finally:
            stack.stop()
        assert anthropic.errors == []


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
