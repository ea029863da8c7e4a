"""Worker logic in-process, on a real Redis: takeovers (a cut answer continued,
``data-continued``), bounded attempts, the job loop (take, finish, stop), lease takeover
of a dead worker's job, hand back on shutdown and cancel. The model is a small scripted
provider written here.

The module runs its own Redis server, so no other worker (such as the session's
``deployment``) can take the jobs these tests enqueue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog, StaleWriter, StreamEnded
from broadcaster.core.events import Event
from broadcaster.generations.content import fold
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Claim, Generations
from examples.tools import TOOLS as EXAMPLE_TOOLS
from tests.support.faults import poll as wait_until
from tests.support.faults import reply_types
from worker.continuation import CONTINUE_PROMPT
from worker.generation import Policy, run_generation
from worker.metrics import WorkerMetrics
from worker.providers.fake import FakeProvider
from worker.runner import Worker
from worker.settings import WorkerSettings
from worker.tools import ToolBox
from worker.writer import StreamWriter

pytestmark = pytest.mark.anyio


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
    """Streams the same text reply for every call. With ``block_at=n`` it yields the first
    ``n`` raw events and then waits on ``gate`` (forever, unless the test sets it)."""

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
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        self.calls += 1
        self.requests.append(request)
        self.opened.set()
        try:
            yield self._events()
        finally:
            self.closed += 1  # the model call is over (finished, failed or cancelled)

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        for i, raw in enumerate(self.events):
            if i == self.block_at:
                self.blocked.set()
                await self.gate.wait()
            yield raw

    async def aclose(self) -> None:
        self.aclosed = True


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("worker-redis"), persistent=False)
    server.start(reuse=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def event_log(own_redis: str) -> AsyncIterator[EventLog]:
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

    await wait_until(probe, f"{stream_id} to reach seq {seq}")


async def wait_status(
    event_log: EventLog, stream_id: str, status: str, within: float = 10
) -> dict[str, str]:
    async def probe() -> dict[str, str] | None:
        meta = await event_log.meta(stream_id)
        return meta if meta is not None and meta.get("status") == status else None

    return await wait_until(probe, f"{stream_id} to be {status}", within)


async def queue_state(event_log: EventLog) -> tuple[int, int]:
    """(entries in the job queue, entries pending in the workers' group)."""
    redis = event_log.redis
    depth = int(await redis.xlen(keys.jobs_key("anthropic")))
    pending = await redis.xpending(keys.jobs_key("anthropic"), keys.JOBS_GROUP)
    return depth, int(pending["pending"])


async def wait_queue_empty(event_log: EventLog) -> None:
    async def probe() -> bool:
        return await queue_state(event_log) == (0, 0)

    await wait_until(probe, "the job queue to be empty")


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


# --- run_generation: takeovers -------------------------------------------------------------


async def test_takeover_after_output_continues_the_open_part(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    assert await claim_and_die(event_log, s, "dead-worker") == Claim(last_seq=0, attempt=1)
    await show_old_attempt(event_log, s, "dead-worker")
    assert (await event_log.meta(s) or {})["text"] == "half an ans"

    # the new attempt stops after its first text delta until the test lets it go on
    provider = ScriptedProvider(["New ", "answer", "."], block_at=3)
    task = asyncio.create_task(
        run_generation(Generations(event_log), provider, s, "worker-2", POLICY)
    )
    await asyncio.wait_for(provider.blocked.wait(), 5)
    await wait_seq(event_log, s, 6)  # 4 old + data-continued + the first delta, same part
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["owner"] == "worker-2" and meta["attempt"] == "2"
    assert meta["text"] == "half an ansNew "  # one answer, continued

    # the dead worker comes back to life: its appends are refused and change nothing
    with pytest.raises(StaleWriter, match="another owner"):
        await event_log.append(
            s, [{"type": "text-delta", "id": "t0", "delta": "zombie"}], owner="dead-worker"
        )
    with pytest.raises(StaleWriter, match="is at seq 6, not 4"):
        await event_log.append(
            s,
            [{"type": "text-delta", "id": "t0", "delta": "zombie"}],
            expect_seq=4,
            owner="dead-worker",
        )
    assert (await event_log.info(s)).last_seq == 6  # type: ignore[union-attr]

    provider.gate.set()
    await asyncio.wait_for(task, 5)
    events = await all_events(event_log, s)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events[:4]] == [e["type"] for e in OLD_ATTEMPT]
    notice = events[4].json()
    assert notice["type"] == "data-continued" and notice["transient"] is True
    assert notice["data"]["attempt"] == 2 and notice["data"]["mode"] == "continue"
    assert "lost" in notice["data"]["reason"]
    new = events[5:]
    # no second start, start-step or text-start: the rest streams into the open part
    assert [e.type for e in new] == [
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert [e.json()["delta"] for e in new if e.type == "text-delta"] == ["New ", "answer", "."]
    assert {e.json()["id"] for e in new if e.type.startswith("text-")} == {"t0"}
    assert new[-1].json() == {
        "type": "finish",
        "finishReason": "stop",
        "messageMetadata": {
            "model": "scripted-model",
            "usage": {"inputTokens": 7, "outputTokens": 3},
            "outputTokensByAttempt": {"2": 3},
        },
    }
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["status"] == "completed"
    assert meta["text"] == "half an ansNew answer."
    assert meta["usage"] == '{"input_tokens": 7, "output_tokens": 3}'
    assert provider.calls == 1 and provider.closed == 1
    # the model was sent the partial turn and asked to go on
    [sent] = provider.requests
    assert sent["messages"][-2] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "half an ans"}],
    }
    assert sent["messages"][-1]["content"][0]["text"] == CONTINUE_PROMPT
    with pytest.raises(StreamEnded):
        await event_log.append(s, [{"type": "text-delta"}], owner="dead-worker")


async def test_takeover_the_old_way_restarts_the_step_coherently(event_log: EventLog) -> None:
    """``WORKER_TAKEOVER=restart`` (for comparison): the cut part is closed, the step
    ends, the call is made again in a new step with new part ids; the stored text and
    answer are the new step's."""
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    assert await claim_and_die(event_log, s, "dead-worker") is not None
    await show_old_attempt(event_log, s, "dead-worker")
    provider = ScriptedProvider(["New ", "answer."])
    policy = dataclasses.replace(POLICY, takeover="restart")
    await asyncio.wait_for(
        run_generation(Generations(event_log), provider, s, "worker-2", policy), 5
    )
    events = [e.json() for e in await all_events(event_log, s)]
    assert [e["type"] for e in events[4:]] == [
        "data-continued",
        "text-end",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert events[4]["data"]["mode"] == "restart" and events[5] == {"type": "text-end", "id": "t0"}
    assert events[8]["id"] == "a2-t0"  # a new part: the closed one is never written again
    assert provider.requests == [REQUEST]  # the same call again
    meta = await event_log.meta(s)
    assert meta is not None and meta["text"] == "New answer."
    assert fold(events) == [{"type": "text", "text": "New answer."}]


async def test_takeover_before_output_just_runs(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    assert await claim_and_die(event_log, s, "dead-worker") == Claim(last_seq=0, attempt=1)
    provider = ScriptedProvider(["only ", "this"])
    await asyncio.wait_for(
        run_generation(Generations(event_log), provider, s, "worker-2", POLICY), 5
    )
    events = await all_events(event_log, s)
    assert [e.type for e in events] == reply_types(2)  # no data-retry: nothing was shown
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["status"] == "completed"
    assert meta["attempt"] == "2"
    assert meta["text"] == "only this"


async def test_start_carries_the_ui_message_id_a_chat_continues(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, {**REQUEST, "ui_message_id": "msg-ui-7"})
    provider = ScriptedProvider(["more"])
    await asyncio.wait_for(run_generation(Generations(event_log), provider, s, "w", POLICY), 5)
    events = await all_events(event_log, s)
    assert events[0].json() == {"type": "start", "messageId": "msg-ui-7"}
    assert events[-1].type == "finish"


async def test_the_fake_calls_a_worker_tool_the_prompt_names_and_answers_with_its_result(
    event_log: EventLog,
) -> None:
    s = sid()
    request = {"prompt": "please roll_dice for me", "model": "fake", "max_tokens": 8}
    assert await Generations(event_log).create(s, request)
    tools = ToolBox.of(EXAMPLE_TOOLS, timeout_s=5, max_output_bytes=1000)
    policy = dataclasses.replace(POLICY, tools=tools)
    fake = FakeProvider(delay_ms=0)
    metrics = WorkerMetrics()
    await asyncio.wait_for(
        run_generation(Generations(event_log), fake, s, "w", policy, metrics=metrics), 5
    )
    calls = metrics.registry.get_sample_value(
        "worker_tool_calls_total", {"tool": "roll_dice", "outcome": "output"}
    )
    assert calls == 1
    events = [e.json() for e in await all_events(event_log, s)]
    expected = await EXAMPLE_TOOLS[0].run({"sides": 6, "count": 2, "seed": 1})
    outputs = [e for e in events if e["type"] == "tool-output-available"]
    assert [o["output"] for o in outputs] == [expected]
    types = [e["type"] for e in events]
    assert types.count("start-step") == 2 and types[-1] == "finish"
    answer = "".join(
        e["delta"] for e in events[types.index("finish-step") :] if e["type"] == "text-delta"
    )
    assert json.dumps(expected) in answer
    # A prompt that names no tool: the worker's tools are offered, none is called.
    quiet = sid()
    assert await Generations(event_log).create(quiet, {**request, "prompt": "just talk"})
    await asyncio.wait_for(run_generation(Generations(event_log), fake, quiet, "w", policy), 5)
    quiet_types = [e.type for e in await all_events(event_log, quiet)]
    assert quiet_types.count("start-step") == 1 and "tool-input-start" not in quiet_types


async def test_attempts_are_bounded(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    for n in (1, 2, 3):  # three workers took it and died before showing anything
        claim = await claim_and_die(event_log, s, f"dead-{n}")
        assert claim == Claim(last_seq=0, attempt=n, lost=n - 1)
    provider = ScriptedProvider(["never"])
    await asyncio.wait_for(
        run_generation(Generations(event_log), provider, s, "worker-4", POLICY), 5
    )
    assert provider.calls == 0  # the model is not called again
    events = await all_events(event_log, s)
    assert [e.json() for e in events] == [
        {"type": "error", "errorText": "gave up after 3 attempts (workers were lost)"}
    ]
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["status"] == "failed"
    assert meta["ended"] == "error"
    assert meta["error"] == "worker lost too many times"
    # an ended generation is never claimed again
    assert await Generations(event_log).claim(s, "worker-5") is None


# --- the Worker: jobs, leases, shutdown, cancel ----------------------------------------------


async def test_worker_runs_a_job_and_stops_without_leaking_tasks(
    own_redis: str, event_log: EventLog
) -> None:
    before = asyncio.all_tasks()
    provider = ScriptedProvider(["Hi", " there", "!"])
    worker = Worker(settings(), own_redis, provider=provider)
    run = asyncio.create_task(worker.run(), name="test-worker-run")
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    await JobQueue(event_log.redis).enqueue(s)

    meta = await wait_status(event_log, s, "completed")
    assert meta["text"] == "Hi there!"
    assert meta["owner"] == worker.consumer
    assert meta["attempt"] == "1"
    events = await all_events(event_log, s)
    assert [e.type for e in events] == reply_types(3)
    assert provider.requests == [REQUEST]
    await wait_queue_empty(event_log)  # acknowledged and deleted

    worker.stop()
    await asyncio.wait_for(run, 10)
    assert run.exception() is None
    assert provider.aclosed
    assert asyncio.all_tasks() == before


async def test_worker_takes_over_a_dead_workers_job_after_the_lease(
    own_redis: str, event_log: EventLog
) -> None:
    # Cancelling Worker.run is not a death: it drains and hands the job back (see the
    # hand-back test). A dead worker is simulated here: a consumer that read the job with
    # XREADGROUP, claimed the generation, showed output, and then never acked or refreshed.
    jobs = JobQueue(event_log.redis)
    await jobs.ensure_group()
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    await jobs.enqueue(s)
    delivered = time.monotonic()
    [job] = await jobs.take(event_log.redis, "dead-consumer", 1, 100)
    assert job.generation_id == s
    assert await Generations(event_log).claim(s, "dead-consumer") == Claim(last_seq=0, attempt=1)
    await show_old_attempt(event_log, s, "dead-consumer")

    provider = ScriptedProvider(["second ", "try"])
    worker = Worker(settings(lease_seconds=1), own_redis, provider=provider)
    run = asyncio.create_task(worker.run())
    try:
        meta = await wait_status(event_log, s, "completed", within=8)
        # Not before the lease ran out (XAUTOCLAIM's min idle time), and soon after it: the
        # lease (1 s) plus at most one blocking read of new jobs (2 s) before the next sweep.
        assert 0.95 <= time.monotonic() - delivered < 15  # not before the lease; bounded
        assert meta["owner"] == worker.consumer
        assert meta["attempt"] == "2"
        assert meta["text"] == "half an anssecond try"  # continued (the provider is no model)
        events = await all_events(event_log, s)
        assert [e.type for e in events[:5]] == [
            *(e["type"] for e in OLD_ATTEMPT),
            "data-continued",
        ]
        assert events[4].json()["data"]["attempt"] == 2
        assert [e.type for e in events[5:]] == [
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish",
        ]
        await wait_queue_empty(event_log)  # the dead consumer's entry was acked and deleted
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)


@pytest.mark.parametrize("shown", [True, False], ids=["after-output", "before-output"])
async def test_stop_hands_back_running_generations(
    own_redis: str, event_log: EventLog, shown: bool
) -> None:
    # worker A's model call never ends: after its grace period, stop() hands the job back
    first = ScriptedProvider(["partial ", "more"], block_at=3 if shown else 0)
    a = Worker(settings(grace_seconds=0.2), own_redis, provider=first)
    run_a = asyncio.create_task(a.run())
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    jobs = JobQueue(event_log.redis)
    await jobs.enqueue(s)
    [(original_entry, _)] = await event_log.redis.xrange(keys.jobs_key("anthropic"))
    await asyncio.wait_for(first.blocked.wait(), 10)
    if shown:
        await wait_seq(event_log, s, 4)  # start, start-step, text-start, text-delta

    stopping = time.monotonic()
    a.stop()
    await asyncio.wait_for(run_a, 10)
    assert time.monotonic() - stopping < 10  # bounded: the grace period, then hand back
    assert first.closed == 1  # the model call was closed
    info = await event_log.info(s)
    assert info is not None and info.ended is None  # not ended: handed back
    assert info.last_seq == (4 if shown else 0)
    meta = await event_log.meta(s)
    assert meta is not None and "error" not in meta
    assert meta["status"] == "queued" and "owner" not in meta  # released, waiting again
    entries = await event_log.redis.xrange(keys.jobs_key("anthropic"))
    assert [(f[b"id"].decode()) for _, f in entries] == [s]  # re-added at the tail
    assert entries[0][0] != original_entry
    assert await queue_state(event_log) == (1, 0)  # nothing left pending for worker A

    second = ScriptedProvider(["fresh ", "reply"])
    b = Worker(settings(), own_redis, provider=second)
    run_b = asyncio.create_task(b.run())
    try:
        meta = await wait_status(event_log, s, "completed")
        assert meta["owner"] == b.consumer
        assert meta["attempt"] == "2"
        # handed back mid-answer: continued in the same part (the provider is no model)
        assert meta["text"] == ("partial fresh reply" if shown else "fresh reply")
        events = await all_events(event_log, s)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        if shown:
            assert [e.type for e in events[:4]] == reply_types(1)[:4]
            assert events[3].json()["delta"] == "partial "
            assert events[4].json() == {
                "type": "data-continued",
                "data": {
                    "attempt": 2,
                    "reason": "the worker running this generation was lost",
                    "mode": "continue",
                },
                "transient": True,
            }
            assert [e.type for e in events[5:]] == reply_types(2)[3:]
        else:
            assert [e.type for e in events] == reply_types(2)
        await wait_queue_empty(event_log)
    finally:
        b.stop()
        await asyncio.wait_for(run_b, 10)


async def test_cancel_stops_the_model_call_and_acks_the_job(
    own_redis: str, event_log: EventLog
) -> None:
    provider = ScriptedProvider(["a", "b"], block_at=3)
    worker = Worker(settings(), own_redis, provider=provider)
    run = asyncio.create_task(worker.run())
    try:
        s = sid()
        assert await Generations(event_log).create(s, REQUEST)
        await JobQueue(event_log.redis).enqueue(s)
        await asyncio.wait_for(provider.blocked.wait(), 10)
        await wait_seq(event_log, s, 4)
        # what POST /v1/generations/{id}/cancel does
        await event_log.append(s, [{"type": "abort", "reason": "cancelled"}], kind="generation")

        async def closed() -> bool:
            return provider.closed == 1

        await wait_until(closed, "the model call to be closed", within=2)
        await wait_queue_empty(event_log)
        events = await all_events(event_log, s)
        assert [e.type for e in events] == [*reply_types(1)[:4], "abort"]
        assert (await event_log.meta(s) or {})["status"] == "cancelled"

        # the worker goes on serving
        provider.block_at = None
        s2 = sid()
        assert await Generations(event_log).create(s2, REQUEST)
        await JobQueue(event_log.redis).enqueue(s2)
        meta = await wait_status(event_log, s2, "completed")
        assert meta["text"] == "ab"
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)


async def test_one_read_over_several_queues_never_runs_more_than_the_concurrency(
    own_redis: str, event_log: EventLog
) -> None:
    """A worker serving two providers reads both queues at once, and ``COUNT`` applies per
    queue: with one free slot it may be given a job of each. The second waits, held, until
    the slot frees; on shutdown it goes back to its queue with the running one."""
    first = ScriptedProvider(["a"], block_at=0)  # every call waits on the gate
    jobs = JobQueue(event_log.redis)
    ids = {"anthropic": sid(), "openai": sid()}
    for provider, gid in ids.items():
        assert await Generations(event_log).create(gid, {**REQUEST, "provider": provider})
        await jobs.enqueue(gid, provider)
    a = Worker(
        settings(concurrency=1, grace_seconds=0.2, lease_seconds=3), own_redis, provider=first
    )
    run_a = asyncio.create_task(a.run())

    async def both_taken() -> bool:
        pending = [
            int((await event_log.redis.xpending(keys.jobs_key(p), keys.JOBS_GROUP))["pending"])
            for p in ids
        ]
        return pending == [1, 1]

    await asyncio.wait_for(first.blocked.wait(), 10)
    await wait_until(both_taken, "both queues' jobs to be taken")
    assert first.calls == 1  # one slot: the other job waits
    a.stop()
    await asyncio.wait_for(run_a, 10)
    for provider, gid in ids.items():
        entries = await event_log.redis.xrange(keys.jobs_key(provider))
        assert [f[b"id"].decode() for _, f in entries] == [gid]  # both handed back
        pending = await event_log.redis.xpending(keys.jobs_key(provider), keys.JOBS_GROUP)
        assert pending["pending"] == 0

    second = ScriptedProvider(["done"])
    b = Worker(settings(concurrency=1), own_redis, provider=second)
    run_b = asyncio.create_task(b.run())
    try:
        for gid in ids.values():
            assert (await wait_status(event_log, gid, "completed"))["text"] == "done"
        assert second.calls == 2
        await wait_queue_empty(event_log)
    finally:
        b.stop()
        await asyncio.wait_for(run_b, 10)


# --- Redis faults under a writer: outages, lost replies, lost writes -------------------------


class ReplyLostLog(EventLog):
    """An event log whose ``fail_on``-th append happens in Redis but whose reply is lost,
    as when the connection drops between the write and its answer."""

    def __init__(self, redis: Any, fail_on: int) -> None:
        super().__init__(redis, ended_ttl=60, idle_ttl=600)
        self.calls = 0
        self.fail_on = fail_on

    async def append(self, stream_id: str, events: Sequence[dict[str, Any]], **kw: Any) -> int:
        self.calls += 1
        seq = await super().append(stream_id, events, **kw)
        if self.calls == self.fail_on:
            raise RedisConnectionError("Connection closed by server (after the write)")
        return seq


async def roll_back(redis: Any, stream_id: str, to_seq: int, text: str) -> None:
    """Make Redis hold what an older copy would: the stream up to ``to_seq`` (its last
    generated id too, as after a restore), the hash's seq, history tag and text to match."""
    log_key = keys.log_key(stream_id)
    entries = await redis.xrange(log_key, max=f"{to_seq}-0")
    await redis.delete(log_key)
    for eid, fields in entries:
        await redis.xadd(log_key, fields, id=eid)
    tag = entries[-1][1].get(b"h", b"") if entries else b""
    await redis.hset(keys.meta_key(stream_id), mapping={"seq": to_seq, "tag": tag})
    await redis.set(keys.text_key(stream_id), text)


async def test_an_append_whose_reply_was_lost_is_not_written_twice(event_log: EventLog) -> None:
    """Regression: a worker retrying an append after a lost reply must recognise that the
    first try happened (its conditional retry is refused at seq + n) and go on."""
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    flaky = ReplyLostLog(event_log.redis, fail_on=3)
    provider = ScriptedProvider(["one ", "two ", "three"])
    await asyncio.wait_for(run_generation(Generations(flaky), provider, s, "worker-1", POLICY), 10)
    events = await all_events(event_log, s)
    assert [e.type for e in events] == reply_types(3)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    meta = await event_log.meta(s)
    assert meta is not None and meta["status"] == "completed"
    assert meta["text"] == "one two three"  # the text was not appended twice either


async def test_an_append_is_retried_while_redis_restarts(tmp_path: Any) -> None:
    """Regression: a worker whose append failed because Redis was down waited out its
    lease and started a new attempt (data-retry); now it retries the append."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=True)
    url = server.start(reuse=False)
    redis = connection.command_client(url)
    try:
        event_log = EventLog(redis, ended_ttl=60, idle_ttl=600)
        s = sid()
        assert await Generations(event_log).create(s, REQUEST)
        claim = await Generations(event_log).claim(s, "worker-1")
        assert claim is not None
        writer = StreamWriter(Generations(event_log), s, "worker-1", claim.last_seq, patience_s=20)
        await writer.flush([{"type": "start", "messageId": s}])
        port = server.port
        server.kill()  # Redis crashes; AOF holds what it acknowledged
        flush = asyncio.create_task(writer.flush([{"type": "start-step"}]))
        await asyncio.sleep(0.8)
        assert not flush.done()  # retrying, not failed
        server = EmbeddedRedis(tmp_path / "redis", port=port, persistent=True)
        server.start(reuse=False)
        await asyncio.wait_for(flush, 10)
        await writer.flush([{"type": "finish"}])
        events = await all_events(event_log, s)
        assert [(e.seq, e.type) for e in events] == [(1, "start"), (2, "start-step"), (3, "finish")]
    finally:
        await redis.aclose()
        server.stop()


async def test_events_redis_lost_are_written_again_by_their_worker(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    claim = await Generations(event_log).claim(s, "worker-1")
    assert claim is not None
    writer = StreamWriter(Generations(event_log), s, "worker-1", claim.last_seq)
    await writer.flush([{"type": "start", "messageId": s}, {"type": "start-step"}])
    await writer.flush([{"type": "text-start", "id": "t0"}])
    await writer.flush([{"type": "text-delta", "id": "t0", "delta": "ab"}])
    await writer.flush([{"type": "text-delta", "id": "t0", "delta": "cd"}])
    before = await all_events(event_log, s)
    # Redis comes back from an older copy: only the first two batches (seq 1..3).
    await roll_back(event_log.redis, s, 3, "")
    await writer.flush([{"type": "text-end", "id": "t0"}, {"type": "finish-step"}])
    events = await all_events(event_log, s)
    assert events[: len(before)] == before  # byte for byte what viewers saw
    assert [e.type for e in events[len(before) :]] == ["text-end", "finish-step"]
    assert [e.seq for e in events] == list(range(1, 8))
    meta = await event_log.meta(s) or {}
    assert meta["text"] == "abcd"
    # The repair took the stream again without counting an attempt or a lost worker.
    assert meta["attempt"] == "1" and "lost" not in meta


async def test_a_loss_before_the_attempt_ends_the_stream_with_error(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    assert await claim_and_die(event_log, s, "dead-worker") is not None
    await show_old_attempt(event_log, s, "dead-worker")  # seq 1..4
    provider = ScriptedProvider(["new"], block_at=3)
    task = asyncio.create_task(
        run_generation(Generations(event_log), provider, s, "worker-2", POLICY)
    )
    await asyncio.wait_for(provider.blocked.wait(), 5)
    await wait_seq(event_log, s, 5)  # data-continued
    # The loss reaches back into the earlier attempt, which this worker cannot rewrite.
    await roll_back(event_log.redis, s, 2, "")
    provider.gate.set()
    await asyncio.wait_for(task, 5)
    events = await all_events(event_log, s)
    assert [e.type for e in events] == ["start", "start-step", "error"]
    assert "lost" in events[-1].json()["errorText"]
    assert (await event_log.meta(s) or {})["status"] == "failed"


async def test_a_vanished_generation_is_rebuilt_by_the_worker_that_wrote_it_all(
    event_log: EventLog,
) -> None:
    """The stream's keys vanish while its worker runs (Redis restarted without data, or
    the hash was evicted): the append gets NOSTREAM. The only writer it ever had creates
    it again and writes everything again."""
    s = sid()
    assert await Generations(event_log).create(s, REQUEST)
    provider = ScriptedProvider(["all ", "mine"], block_at=3)
    task = asyncio.create_task(
        run_generation(Generations(event_log), provider, s, "worker-1", POLICY)
    )
    await asyncio.wait_for(provider.blocked.wait(), 5)
    await wait_seq(event_log, s, 4)
    before = await all_events(event_log, s)
    await event_log.redis.delete(keys.meta_key(s))  # the log is left: it is dropped too
    provider.gate.set()
    await asyncio.wait_for(task, 5)
    events = await all_events(event_log, s)
    assert events[:4] == before
    assert [e.type for e in events] == reply_types(2)
    meta = await event_log.meta(s)
    assert meta is not None and meta["status"] == "completed" and meta["text"] == "all mine"
