"""A worker whose provider cannot authenticate: refused at start when it has no key at all,
and, when the model API refuses its key (401), each generation fails at once with an
``error`` saying so: never retried, never taken for a lost worker. Real processes: a Redis
server, a front-end and a worker whose real ``anthropic`` and ``openai`` SDKs call the
suite's local fake servers, which want another key than the worker's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropicServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.procs import ROOT, read_sse, run_python
from tests.support.stacks import Stack, assert_well_formed, create, start_stack, status

pytestmark = pytest.mark.anyio


def test_a_worker_without_an_anthropic_key_is_refused_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    # An unreachable REDIS_URL: the refusal comes before the worker connects to anything.
    env |= {"REDIS_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    env.pop("WORKER_PROVIDERS", None)
    run = run_python(["-m", "worker", "run", "--provider", "anthropic"], 60, env=env, cwd=tmp_path)
    assert run.returncode == 2, run
    assert run.stderr.strip().splitlines() == [
        "worker: bad settings: the anthropic provider needs ANTHROPIC_API_KEY (or "
        "ANTHROPIC_AUTH_TOKEN), unset here: set it, or serve another provider (--provider)"
    ]


@pytest.fixture(scope="module")
def anth() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="the-right-key") as server:
        yield server


@pytest.fixture(scope="module")
def oai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="the-right-key") as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    anth: FakeAnthropicServer, oai: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "WORKER_PROVIDERS": "anthropic,openai",
        "ANTHROPIC_BASE_URL": anth.base_url,
        "ANTHROPIC_API_KEY": "a-revoked-key",
        "OPENAI_BASE_URL": oai.base_url,
        "OPENAI_API_KEY": "a-revoked-key",
        "WORKER_RETRY_BASE_SECONDS": "0.05",
    }
    s = start_stack(tmp_path_factory.mktemp("provider-auth"), "auth", env)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("provider", "variable"), [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")]
)
async def test_a_refused_key_fails_the_generation_at_once(
    anth: FakeAnthropicServer,
    oai: FakeOpenAIServer,
    stack: Stack,
    provider: str,
    variable: str,
) -> None:
    srv = anth if provider == "anthropic" else oai
    first = srv.request_count
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, prompt="hello", provider=provider)
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
        typed = assert_well_formed(result)
        assert [e.event for e in typed] == ["error"]
        error_text = typed[0].json()["errorText"]
        assert error_text.startswith("model provider refused the API key (401)"), error_text
        assert error_text.endswith(f"check {variable}")
        st = await status(client, stack.url, gid)
        assert (st["status"], st["error"]) == ("failed", error_text)
    assert srv.request_count == first + 1, "one call: an authentication error is not retried"
    log = stack.worker.log()
    assert "Traceback" not in log
    assert f"generation {gid}: attempt 2" not in log, "not taken for a lost worker"
    assert stack.worker.alive()
