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
import time
from typing import Any

import pytest

from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog, StaleWriter, StreamEnded
from broadcaster.generations.content import fold
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Claim, Generations
from examples.tools import TOOLS as EXAMPLE_TOOLS
from tests.support.faults import reply_types
from tests.support.polling import poll
from tests.support.worker_parts import (  # noqa: F401 (fixtures: own_redis, event_log)
    OLD_ATTEMPT,
    POLICY,
    REQUEST,
    ScriptedProvider,
    all_events,
    claim_and_die,
    event_log_fixture,
    own_redis_fixture,
    queue_state,
    settings,
    show_old_attempt,
    sid,
    wait_queue_empty,
    wait_seq,
    wait_status,
)
from worker.attempt import run_generation
from worker.continuation import CONTINUE_PROMPT
from worker.daemon import Worker
from worker.metrics import WorkerMetrics
from worker.providers.base import CACHE_KEY
from worker.providers.fake import FakeProvider
from worker.tools import ToolBox
from worker.usage import Usage

pytestmark = pytest.mark.anyio


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
            "usage": Usage(7, 3).ai_sdk(),
            "outputTokensByAttempt": {"2": 3},
            "usageByAttempt": {"2": Usage(7, 3).ai_sdk()},
        },
    }
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["status"] == "completed"
    assert meta["text"] == "half an ansNew answer."
    assert json.loads(meta["usage"]) == Usage(7, 3).snake()
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
    assert provider.requests == [{**REQUEST, CACHE_KEY: s}]  # the same call again
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
    assert provider.requests == [{**REQUEST, CACHE_KEY: s}]  # its prompt cache: its id
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

        await poll(closed, "the model call to be closed", within=2)
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
    await poll(both_taken, "both queues' jobs to be taken")
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


async def test_a_second_job_for_a_generation_running_here_runs_once_that_run_ends(
    own_redis: str, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision's job can reach the worker while the run that asked for the decision is
    still settling (its wait written, its job not yet acknowledged). That second queue
    entry starts once the run ends, and its claim settles it; it was acknowledged and
    dropped, and the decided generation waited 30 s for the sweep to queue it again."""
    runs: list[str] = []
    first_may_end = asyncio.Event()

    async def settling_run(
        generations: Any, provider: Any, gid: str, *args: Any, **kw: Any
    ) -> None:
        runs.append(gid)
        if len(runs) == 1:
            await first_may_end.wait()

    monkeypatch.setattr("worker.dispatch.run_generation", settling_run)
    worker = Worker(settings(), own_redis, provider=ScriptedProvider(["x"]))
    run = asyncio.create_task(worker.run())
    try:
        s = sid()
        jobs = JobQueue(event_log.redis)
        await jobs.ensure_group()
        assert await Generations(event_log).create(s, REQUEST)
        await jobs.enqueue(s)

        async def pending(n: int) -> bool:
            info = await event_log.redis.xpending(keys.jobs_key("anthropic"), jobs.group)
            return bool(len(runs) == 1 and info["pending"] == n)

        await poll(lambda: pending(1), "the first run to start")
        await jobs.enqueue(s)  # the decision's job, while the first run settles
        await poll(lambda: pending(2), "the second entry to be read by the worker")
        assert runs == [s]  # not run beside the first
        first_may_end.set()

        async def ran_again() -> bool:
            return runs == [s, s]

        await poll(ran_again, "the second entry to run once the first run ended")
        await wait_queue_empty(event_log)  # both acknowledged
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
