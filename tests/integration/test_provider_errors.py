"""Provider errors through the worker: faults before any output retried invisibly, faults
after output ending the stream with an error, each counted by kind in
worker_provider_errors_total; and requests refused at creation with a 422 naming the
field, nothing queued."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support import fake_openai as oai
from tests.support import provider_fixtures
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    drop,
    http_error,
    sse_error,
    stall,
    text_reply,
)
from tests.support.polling import poll
from tests.support.procs import Proc, read_sse, start_frontend, start_worker
from tests.support.provider_fixtures import _async, kinds, queued, run, worker_env
from tests.support.provider_requests import WEATHER_TOOL
from tests.support.stacks import Stack, start_stack, status

pytestmark = pytest.mark.anyio

# The deployment's fixtures, found by pytest under these names (each one's own
# fixtures included).
_worker_log_is_clean = provider_fixtures._worker_log_is_clean
anth = provider_fixtures.anth
base_dir = provider_fixtures.base_dir
fakes = provider_fixtures.fakes
oai_srv = provider_fixtures.oai_srv
stack = provider_fixtures.stack

# --- OpenAI errors ---------------------------------------------------------------------------


CLEAN_RUN = [
    "start",
    "start-step",
    "text-start",
    "text-delta",
    "text-delta",
    "text-end",
    "finish-step",
    "finish",
]
"""A two-chunk answer's events, with no trace of a failed attempt."""


async def test_openai_errors_before_output_are_retried_invisibly(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue([oai.http_error(429)])  # retry-after: 1
    oai_srv.enqueue([oai.http_error(500)])
    oai_srv.enqueue(oai.reply(text=["third ", "time"]))
    first = oai_srv.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="retry", provider="openai")
        assert kinds(events) == CLEAN_RUN
        assert (await status(client, stack.url, gid))["text"] == "third time"
    started = [e.started_at for e in oai_srv.exchanges[first:]]
    assert len(started) == 3
    assert started[1] - started[0] >= 0.9  # retry-after honoured
    assert counted(before, await stack.provider_errors()) == {
        "rate_limited": 1,
        "server_error": 1,
    }


def counted(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The provider errors counted between two readings of the worker's metrics."""
    return {
        kind: after[kind] - before.get(kind, 0)
        for kind in after
        if after[kind] != before.get(kind, 0)
    }


ANTHROPIC_PARTIAL = text_reply(["par", "tial"])[:4]
OPENAI_PARTIAL = oai.reply(text=["par", "tial"])[:3]
"""The start of a reply: two text deltas that viewers see (Anthropic's message_start,
content_block_start and deltas; OpenAI's role chunk and deltas)."""

EARLY_FAULTS: list[tuple[str, list[Any], str]] = [
    ("anthropic", [http_error(529, headers={"retry-after-ms": "50"})], "overloaded"),
    ("anthropic", [stall(send_headers=False)], "timeout"),  # no headers in the read timeout
    ("anthropic", [drop()], "connection"),  # the connection closed before any answer
    ("anthropic", [sse_error("overloaded_error", "Overloaded")], "mid_stream"),  # first thing
    ("anthropic", [], "incomplete"),  # a 200 with an empty stream
    ("openai", [oai.http_error(503, headers={"retry-after-ms": "50"})], "server_error"),
    ("openai", [oai.stall(send_headers=False)], "timeout"),
    ("openai", [oai.drop()], "connection"),
    ("openai", [oai.stream_error("model is loading")], "mid_stream"),  # an error object first
    ("openai", [oai.done()], "incomplete"),  # [DONE] and nothing before it
]

LATE_FAULTS: list[tuple[str, list[Any], str, str]] = [
    ("anthropic", [*ANTHROPIC_PARTIAL, sse_error("api_error", "boom")], "mid_stream", "boom"),
    ("anthropic", ANTHROPIC_PARTIAL, "incomplete", "before message_stop"),
    ("anthropic", [*ANTHROPIC_PARTIAL, stall()], "timeout", "timed out"),
    ("anthropic", [*ANTHROPIC_PARTIAL, drop()], "connection", "cannot reach"),
    ("openai", [*OPENAI_PARTIAL, oai.stream_error("boom")], "mid_stream", "boom"),
    ("openai", OPENAI_PARTIAL, "incomplete", "without a finish_reason"),
    ("openai", [*OPENAI_PARTIAL, oai.stall()], "timeout", "timed out"),
    ("openai", [*OPENAI_PARTIAL, oai.drop()], "connection", "cannot reach"),
]


@pytest.mark.parametrize("case", EARLY_FAULTS, ids=[f"{p}-{k}" for p, _, k in EARLY_FAULTS])
async def test_every_fault_before_output_is_retried_invisibly(
    fakes: dict[str, FakeAnthropicServer], stack: Stack, case: tuple[str, list[Any], str]
) -> None:
    """Either provider, the same rule: nothing was shown, so the call is made again and
    viewers never see the failed one; the worker counts the error by its kind."""
    provider, fault, kind = case
    fake = fakes[provider]
    fake.enqueue(fault)
    second = ["second ", "time"]
    fake.enqueue(text_reply(second) if provider == "anthropic" else oai.reply(text=second))
    first = fake.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="retry", provider=provider)
        assert kinds(events) == CLEAN_RUN  # no data-retry, no error: nothing was shown
        st = await status(client, stack.url, gid)
        assert (st["status"], st["text"], st["error"]) == ("completed", "second time", None)
    assert fake.request_count == first + 2
    assert counted(before, await stack.provider_errors()) == {kind: 1}


@pytest.mark.parametrize("case", LATE_FAULTS, ids=[f"{p}-{k}" for p, _, k, _ in LATE_FAULTS])
async def test_every_fault_after_output_ends_with_error(
    fakes: dict[str, FakeAnthropicServer], stack: Stack, case: tuple[str, list[Any], str, str]
) -> None:
    """Either provider, the same rule: output was shown, so the stream ends with an
    ``error`` after it and the call is not made again."""
    provider, script, kind, expected = case
    fake = fakes[provider]
    fake.enqueue(script)
    first = fake.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        gid, events = await run(client, stack.url, prompt="fail late", provider=provider)
        assert kinds(events) == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "error",
        ]
        assert expected in events[-1].json()["errorText"]
        st = await status(client, stack.url, gid)
        assert (st["status"], st["text"]) == ("failed", "partial")
    assert fake.request_count == first + 1  # output was shown: never retried
    assert counted(before, await stack.provider_errors()) == {kind: 1}


async def test_openai_connection_refused_fails_with_a_clear_error(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    own = start_stack(
        base_dir,
        "openai-refused",
        {
            **worker_env(anth.base_url, closed),
            "WORKER_PROVIDERS": "openai",
            "WORKER_PROVIDER_RETRIES": "1",
        },
        metrics=True,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gid, events = await run(client, own.url, prompt="anyone?", provider="openai")
            assert kinds(events) == ["error"]
            error_text = events[0].json()["errorText"]
            assert error_text.startswith("cannot reach the model provider"), error_text
            st = await status(client, own.url, gid)
            assert (st["status"], st["error"], st["usage"]) == ("failed", error_text, None)
        assert await own.provider_errors() == {"connection": 2}  # one retry, then the error
        assert "Traceback" not in own.worker.log()
    finally:
        own.stop()


async def test_an_openai_client_error_fails_at_once(
    oai_srv: oai.FakeOpenAIServer, stack: Stack
) -> None:
    oai_srv.enqueue(
        [oai.http_error(400, oai.error_body("model 'x' not found", "invalid_request_error"))]
    )
    first = oai_srv.request_count
    before = await stack.provider_errors()
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, prompt="x", provider="openai")
        assert kinds(events) == ["error"]
        assert "model 'x' not found" in events[0].json()["errorText"]
    assert oai_srv.request_count == first + 1
    assert counted(before, await stack.provider_errors()) == {"client_error": 1}


# --- refusals at creation --------------------------------------------------------------------


BAD_REQUESTS = [
    ({"prompt": "x", "tools": [{"input_schema": {"type": "object"}}]}, "tools[0].name"),
    ({"prompt": "x", "tools": [{"name": "f"}]}, "tools[0].input_schema"),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}
            ]
        },
        "messages[0].content[0].tool_use_id",
    ),
    (
        {"prompt": "x", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 2000}},
        "thinking.budget_tokens",
    ),
    (
        {"prompt": "x", "thinking": {"type": "enabled", "budget_tokens": 512}},
        "thinking.budget_tokens",
    ),
    ({"prompt": "x", "temperature": 1.5}, "temperature"),
    (
        {
            "prompt": "x",
            "max_tokens": 2048,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "any"},
        },
        "tool_choice.type",
    ),
    ({"prompt": "x", "provider": "openai", "temperature": 2.5}, "temperature"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "not base64!",
                            },
                        }
                    ],
                }
            ]
        },
        "messages[0].content[0].source.data",
    ),
    ({"prompt": "x", "promtp": "typo"}, "promtp"),
    (
        {"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]},
        "tools[0].type",
    ),
    # What Chat Completions has no equivalent for, refused before it is queued.
    (
        {
            "prompt": "x",
            "provider": "openai",
            "tools": [{"type": "web_search_20250305", "name": "w"}],
        },
        "tools[0].type",
    ),
    (
        {
            "provider": "openai",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "url", "url": "https://example.com/a.pdf"},
                        }
                    ],
                }
            ],
        },
        "messages[0].content[0].source.type",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"),
    BAD_REQUESTS,
    ids=[f"{b.get('provider', 'anthropic')}-{f}" for b, f in BAD_REQUESTS],
)
async def test_a_bad_request_is_422_naming_the_field_and_nothing_is_queued(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    before = queued(stack.redis.url)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(stack.url + "/v1/generations", json={**body, "id": "bad-one"})
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"
        assert field in r.json()["message"]
        assert (await client.get(stack.url + "/v1/generations/bad-one")).status_code == 404
    assert queued(stack.redis.url) == before


async def test_an_image_counts_against_the_body_limit(
    anth: FakeAnthropicServer, stack: Stack
) -> None:
    """Base64 in the body: an image that fits reaches the model byte for byte; one that
    takes the body over the limit (1 MiB by default) is 413, and nothing is queued."""

    def with_png(size: int) -> dict[str, Any]:
        data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(size)).decode()
        source = {"type": "base64", "media_type": "image/png", "data": data}
        return {"messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]}

    anth.enqueue(text_reply(["a picture"]))
    first = anth.request_count
    fits = with_png(700_000)  # about 930 KB of base64
    async with httpx.AsyncClient(timeout=30) as client:
        _, events = await run(client, stack.url, **fits)
        assert events[-1].event == "finish", events[-1].data
        # The worker removes a job from its queue just after the generation's end.
        await poll(_async(lambda: queued(stack.redis.url) == 0), "the first job removed", 10)
        before = queued(stack.redis.url)
        r = await client.post(
            stack.url + "/v1/generations", json={**with_png(800_000), "id": "big"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "too_large"
        assert (await client.get(stack.url + "/v1/generations/big")).status_code == 404
    assert queued(stack.redis.url) == before
    assert anth.requests[first].body["messages"] == fits["messages"]
    assert anth.request_count == first + 1


async def test_a_provider_nobody_serves_is_refused_and_nothing_queued(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    own = start_stack(
        base_dir,
        "anthropic-only",
        {**worker_env(anth.base_url, "http://127.0.0.1:1/v1"), "WORKER_PROVIDERS": "anthropic"},
        metrics=True,
    )
    try:
        anth.enqueue(text_reply(["served"]))
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(
                own.url + "/v1/generations",
                json={"prompt": "x", "provider": "openai", "id": "unserved"},
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "provider_unavailable"
            assert "openai" in r.json()["message"]
            assert (await client.get(own.url + "/v1/generations/unserved")).status_code == 404
            assert queued(own.redis.url) == 0
            _, events = await run(client, own.url, prompt="x", provider="anthropic")
            assert events[-1].event == "finish"
    finally:
        own.stop()


async def test_a_job_in_the_previous_versions_queue_still_runs(
    anth: FakeAnthropicServer, base_dir: Path
) -> None:
    """What a front-end of the previous version leaves: a request without a provider, its
    id on the single queue. The worker that serves Anthropic runs it."""
    redis = EmbeddedRedis(base_dir / "legacy-redis", persistent=False)
    redis.start(reuse=False)
    client_ = redis_sync.Redis.from_url(redis.url)
    old_request = {"prompt": "from the old queue", "model": "claude-old", "max_tokens": 50}
    meta = keys.meta_key("legacy-job")
    client_.hset(
        meta,
        mapping={
            "kind": "generation",
            "seq": 0,
            "status": "queued",
            "attempt": 0,
            "created_at": 1,
            "updated_at": 1,
            "request": json.dumps(old_request),
        },
    )
    client_.xadd(keys.LEGACY_JOBS_KEY, {"id": "legacy-job"})
    anth.enqueue(text_reply(["still ", "runs"]))
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, base_dir, "legacy-frontend"))
        procs.append(
            start_worker(
                redis.url,
                base_dir,
                "legacy-worker",
                env={
                    **worker_env(anth.base_url, f"http://127.0.0.1:{free_port()}/v1"),
                    "WORKER_PROVIDERS": "anthropic",
                },
            )
        )
        async with httpx.AsyncClient(timeout=30) as client:
            result = await read_sse(client, f"{procs[0].url}/v1/streams/legacy-job/events")
            assert result.typed()[-1].event == "finish"
            st = await status(client, procs[0].url, "legacy-job")
        assert (st["status"], st["text"], st["provider"]) == (
            "completed",
            "still runs",
            "anthropic",
        )
        assert client_.xlen(keys.LEGACY_JOBS_KEY) == 0  # acknowledged and deleted
    finally:
        for p in procs:
            p.stop()
        client_.close()
        redis.stop()
