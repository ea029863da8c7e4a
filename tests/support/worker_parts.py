"""What the in-process worker tests share (``tests/integration/test_worker*.py``): a
Redis server of the module's own (so no other worker takes the jobs its tests enqueue),
the event log on it, a small scripted provider, the settings and the waits."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Event
from broadcaster.generations.lifecycle import Claim, Generations
from tests.support.polling import poll
from worker.attempt import Policy
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.parts import ModelEvent
from worker.settings import WorkerSettings

REQUEST = {"prompt": "tell me", "model": "scripted-model", "max_tokens": 50}
POLICY = Policy(merge_s=0, max_attempts=3, provider_retries=0, retry_base_s=0.01)


async def claim_and_die(event_log: EventLog, s: str, owner: str) -> Claim | None:
    """A worker that claimed ``s`` and died: its hold is left to lapse (``held_at`` put a
    lease back), so the next claim is a takeover from a lost worker."""
    claim = await Generations(event_log).claim(s, owner)
    await event_log.redis.hset(keys.meta_key(s), "held_at", 0)
    return claim


# --- a scripted provider -------------------------------------------------------------------


def raw_reply(chunks: Sequence[str], input_tokens: int, model: str) -> list[dict[str, Any]]:
    """Anthropic's raw stream events for a one-text-block reply."""
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_scripted",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}}
            for c in chunks
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(chunks)},
        },
        {"type": "message_stop"},
    ]


class ScriptedProvider:
    """Streams the same text reply for every call (Anthropic's raw events, read as the
    Anthropic provider reads them). With ``block_at=n`` it yields the first ``n`` raw
    events' and then waits on ``gate`` (forever, unless the test sets it)."""

    def __init__(
        self,
        chunks: Sequence[str],
        *,
        block_at: int | None = None,
        input_tokens: int = 7,
        model: str = "scripted-model",
    ) -> None:
        self.events = raw_reply(chunks, input_tokens, model)
        self.block_at = block_at
        self.gate = asyncio.Event()
        self.opened = asyncio.Event()
        self.blocked = asyncio.Event()
        self.calls = 0
        self.closed = 0
        self.requests: list[dict[str, Any]] = []
        self.aclosed = False

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        self.calls += 1
        self.requests.append(request)
        self.opened.set()
        try:
            yield self._events()
        finally:
            self.closed += 1  # the model call is over (finished, failed or cancelled)

    async def _events(self) -> AsyncIterator[ModelEvent]:
        reader = AnthropicReader()
        for i, raw in enumerate(self.events):
            if i == self.block_at:
                self.blocked.set()
                await self.gate.wait()
            for event in reader.feed(raw):
                yield event

    async def aclose(self) -> None:
        self.aclosed = True


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module", name="own_redis")
def own_redis_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("worker-redis"), persistent=False)
    server.start(reuse=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(name="event_log")
async def event_log_fixture(own_redis: str) -> AsyncIterator[EventLog]:
    redis = connection.command_client(own_redis)
    await redis.flushall()  # every test starts with an empty queue
    yield EventLog(redis, ended_ttl=60, idle_ttl=600)
    await redis.aclose()


def sid() -> str:
    return "w-" + secrets.token_hex(6)


def settings(**overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "provider": "fake",
        "merge_ms": 0,
        "cancel_poll_seconds": 0.05,
        "lease_seconds": 5,
        "grace_seconds": 2,
        "concurrency": 4,
        **overrides,
    }
    return WorkerSettings(**values)


async def all_events(event_log: EventLog, stream_id: str) -> list[Event]:
    return [e async for page in event_log.read_after(stream_id, 0) for e in page]


async def wait_seq(event_log: EventLog, stream_id: str, seq: int) -> None:
    async def probe() -> bool:
        info = await event_log.info(stream_id)
        return info is not None and info.last_seq >= seq

    await poll(probe, f"{stream_id} to reach seq {seq}")


async def wait_status(
    event_log: EventLog, stream_id: str, status: str, within: float = 10
) -> dict[str, str]:
    async def probe() -> dict[str, str] | None:
        meta = await event_log.meta(stream_id)
        return meta if meta is not None and meta.get("status") == status else None

    return await poll(probe, f"{stream_id} to be {status}", within)


async def queue_state(event_log: EventLog) -> tuple[int, int]:
    """(entries in the job queue, entries pending in the workers' group)."""
    redis = event_log.redis
    depth = int(await redis.xlen(keys.jobs_key("anthropic")))
    pending = await redis.xpending(keys.jobs_key("anthropic"), keys.JOBS_GROUP)
    return depth, int(pending["pending"])


async def wait_queue_empty(event_log: EventLog) -> None:
    async def probe() -> bool:
        return await queue_state(event_log) == (0, 0)

    await poll(probe, "the job queue to be empty")


OLD_ATTEMPT = [
    {"type": "start", "messageId": "x"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t0"},
    {"type": "text-delta", "id": "t0", "delta": "half an ans"},
]


async def show_old_attempt(event_log: EventLog, stream_id: str, owner: str) -> None:
    """What a worker that died mid-generation left behind: a claim and some output."""
    seq = await event_log.append(
        stream_id,
        [{**e, "messageId": stream_id} if e["type"] == "start" else e for e in OLD_ATTEMPT],
        kind="generation",
        expect_seq=0,
        owner=owner,
        text_append="half an ans",
    )
    assert seq == len(OLD_ATTEMPT)
