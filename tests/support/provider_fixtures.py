"""The deployment the provider tests share: the fake Anthropic and OpenAI servers, one
stack (Redis, a front-end, a worker serving both, with its metrics port) per test
module, the check that its worker's log stays clean, and the calls the tests make of
it. A test module imports the fixtures it uses (pytest finds them by name). The worker
sends no prompt-cache fields (``WORKER_PROMPT_CACHING=false``): these tests hold what
reaches the model to the request, field for field; the cache has its own
(tests/integration/test_prompt_caching.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.generations.jobs import queues
from broadcaster.generations.request import PROVIDERS
from tests.support import fake_openai as oai
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
)
from tests.support.procs import SSEEvent, read_sse
from tests.support.stacks import Stack, create, start_stack

# --- processes -------------------------------------------------------------------------------


def worker_env(anthropic_url: str, openai_url: str, **extra: str) -> dict[str, str]:
    return {
        "WORKER_PROVIDERS": "anthropic,openai",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "ANTHROPIC_API_KEY": "test",
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "test",
        "WORKER_MERGE_MS": "0",
        "WORKER_RETRY_BASE_SECONDS": "0.05",
        "WORKER_READ_TIMEOUT_SECONDS": "1",
        "WORKER_PROMPT_CACHING": "false",
        **extra,
    }


@pytest.fixture(scope="module")
def anth() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def oai_srv() -> Iterator[oai.FakeOpenAIServer]:
    with oai.FakeOpenAIServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture
def fakes(
    anth: FakeAnthropicServer, oai_srv: oai.FakeOpenAIServer
) -> dict[str, FakeAnthropicServer]:
    """The fake server of each provider."""
    return {"anthropic": anth, "openai": oai_srv}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-providers")


@pytest.fixture(scope="module")
def stack(
    anth: FakeAnthropicServer, oai_srv: oai.FakeOpenAIServer, base_dir: Path
) -> Iterator[Stack]:
    s = start_stack(base_dir, "main", worker_env(anth.base_url, oai_srv.base_url), metrics=True)
    try:
        assert "serving anthropic, openai" in s.worker.log()
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _worker_log_is_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        assert stack.worker.alive(), stack.worker.log()
        log = stack.worker.log()
        assert "Traceback" not in log, log[max(0, log.find("Traceback") - 2000) :][:6000]


# --- helpers ---------------------------------------------------------------------------------


async def run(client: httpx.AsyncClient, base: str, **body: Any) -> tuple[str, list[SSEEvent]]:
    """Create a generation and read its stream to the end: (id, the typed events)."""
    gid = await create(client, base, **body)
    result = await read_sse(client, f"{base}/v1/streams/{gid}/events")
    assert result.status == 200 and result.done
    assert result.ids == list(range(1, len(result.ids) + 1))
    return gid, result.typed()


def kinds(events: list[SSEEvent]) -> list[str]:
    return [e.event or "" for e in events]


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe


def queued(redis_url: str) -> int:
    """Entries in every job queue."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        return sum(int(client.xlen(key)) for key in queues(PROVIDERS))
    finally:
        client.close()
