"""The liveness look (``broadcaster/generations/liveness.py``, ``scripts/liveness.lua``)
on a real Redis with real subscriptions: a worker whose subscription is gone is suspected,
then dead, and its jobs and generations are taken over at once; one that subscribes
again is not; a consumer that never registered, and anyone judged by a worker that is
not settled or not subscribed itself, is left to its lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog
from broadcaster.generations import liveness
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations, Held
from broadcaster.generations.liveness import DeadWorkers, Look, Subscription, Sweeper
from tests.support.polling import poll
from tests.support.worker_parts import (  # noqa: F401 (fixtures: own_redis, event_log)
    REQUEST,
    event_log_fixture,
    own_redis_fixture,
    sid,
)

pytestmark = pytest.mark.anyio

LEASE_S = 60.0
"""Longer than any test: a takeover here is liveness's, never the lease's."""


@contextlib.asynccontextmanager
async def alive(url: str, event_log: EventLog, consumer: str) -> AsyncIterator[Subscription]:
    """``consumer``'s liveness subscription, held until the block ends (its process
    "dies": the connection closes)."""
    sub = Subscription(url, event_log.redis, consumer)
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.confirmed.wait(), 5)
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def running_job(event_log: EventLog, jobs: JobQueue, owner: str) -> str:
    """A generation ``owner`` took from the queue and claimed, as a worker does."""
    gid = sid()
    assert await Generations(event_log, LEASE_S).create(gid, REQUEST)
    await jobs.enqueue(gid)
    [job] = await jobs.take(event_log.redis, owner, 1, None)
    assert job.generation_id == gid
    assert await Generations(event_log, LEASE_S).claim(gid, owner) is not None
    return gid


async def queues(event_log: EventLog) -> tuple[JobQueue, Sweeper]:
    """The job queues, ready, and the rescuer's look at them."""
    jobs = JobQueue(event_log.redis)
    await jobs.ensure_group()
    return jobs, Sweeper(jobs, "rescuer", LEASE_S)


@pytest.fixture
async def rescuer(own_redis: str, event_log: EventLog) -> AsyncIterator[tuple[JobQueue, Sweeper]]:
    """The queues and the look of a worker named ``rescuer``, alive (and not settled: the
    tests say whether it may judge)."""
    found = await queues(event_log)
    async with alive(own_redis, event_log, "rescuer"):
        yield found


async def state_of(event_log: EventLog, consumer: str) -> str:
    """What the registry says of ``consumer``: ``a``, ``s``, ``d`` or ``""``."""
    raw = await event_log.redis.hget(keys.WORKERS_KEY, consumer)
    return raw.decode()[:1] if raw else ""


async def look_until(sweeper: Sweeper, done: object, what: str) -> Look:
    async def probe() -> Look | None:
        found = await sweeper.look(8, judge=True, lapsed=False, advertise=False)
        return found if done(found) else None  # type: ignore[operator]

    return await poll(probe, what, within=10, every=0.1)


async def test_a_worker_whose_subscription_is_gone_is_taken_over_at_once(
    own_redis: str, event_log: EventLog
) -> None:
    jobs, sweeper = await queues(event_log)
    async with alive(own_redis, event_log, "rescuer"):
        async with alive(own_redis, event_log, "victim"):
            gid = await running_job(event_log, jobs, "victim")
            quiet = await sweeper.look(8, judge=True, lapsed=True, advertise=False)
            assert quiet.jobs == [] and quiet.suspects == 0 and quiet.subscribed
        # Its connection is closed: suspected first, then dead, then its job is ours.
        # (Redis sees the close when its loop reads it: on a busy machine, after the
        # next look may have come; so the looks go on until one suspects it.)
        await asyncio.sleep(liveness.JUDGE_EVERY_S)  # one judgement per moment
        first = await look_until(sweeper, lambda f: f.suspects or f.jobs, "a suspect")
        assert first.jobs == [] and first.suspects == 1
        took = await look_until(sweeper, lambda f: f.jobs, "the dead worker's job")
    assert [j.generation_id for j in took.jobs] == [gid] and took.jobs[0].taken_over
    assert took.dead == {"victim"}
    # Its hold is fresh (a 60 s lease): only a claim that knows it dead takes it.
    with pytest.raises(Held):
        await Generations(event_log, LEASE_S).claim(gid, "rescuer")
    dead = DeadWorkers(LEASE_S)
    dead.note(took.dead)
    claim = await Generations(event_log, LEASE_S, dead.current).claim(gid, "rescuer")
    assert claim is not None and claim.lost == 1 and claim.attempt == 2
    assert await event_log.redis.smembers(keys.DEAD_WORKERS_KEY) == set()  # nothing left
    assert await state_of(event_log, "victim") == "d"


async def test_a_worker_that_subscribes_again_in_time_is_not_dead(
    own_redis: str, event_log: EventLog, rescuer: tuple[JobQueue, Sweeper]
) -> None:
    jobs, sweeper = rescuer
    async with alive(own_redis, event_log, "blip"):
        await running_job(event_log, jobs, "blip")
    cut = await look_until(sweeper, lambda f: f.suspects or f.jobs, "a suspect")
    assert cut.suspects == 1 and cut.jobs == []
    async with alive(own_redis, event_log, "blip"):  # back, as its run loop does
        await asyncio.sleep(liveness.SUSPECT_S + liveness.JUDGE_EVERY_S)
        back = await sweeper.look(8, judge=True, lapsed=False, advertise=False)
    assert back.jobs == [] and back.suspects == 0
    assert await state_of(event_log, "blip") == "a"


async def test_a_consumer_that_never_registered_waits_for_its_lease(
    event_log: EventLog, rescuer: tuple[JobQueue, Sweeper]
) -> None:
    jobs, sweeper = rescuer
    gid = await running_job(event_log, jobs, "old-version-worker")  # no subscription
    for _ in range(3):
        found = await sweeper.look(8, judge=True, lapsed=True, advertise=False)
        assert found.jobs == [] and found.suspects == 0
        await asyncio.sleep(liveness.JUDGE_EVERY_S)
    # Its lease lapses (a short one here): the lease's takeover, as before.
    short = Sweeper(jobs, "rescuer", 0.3)
    await asyncio.sleep(0.4)
    lapsed = await short.look(8, judge=True, lapsed=True, advertise=False)
    assert [j.generation_id for j in lapsed.jobs] == [gid] and lapsed.dead == set()


@pytest.mark.parametrize("why", ["not settled", "not subscribed"])
async def test_a_worker_unsure_of_itself_judges_nobody(
    own_redis: str, event_log: EventLog, why: str
) -> None:
    jobs, sweeper = await queues(event_log)
    async with alive(own_redis, event_log, "victim"):
        await running_job(event_log, jobs, "victim")
    async with contextlib.AsyncExitStack() as stack:
        if why == "not settled":
            await stack.enter_async_context(alive(own_redis, event_log, "rescuer"))
        for _ in range(3):
            found = await sweeper.look(
                8, judge=why == "not subscribed", lapsed=True, advertise=False
            )
            assert found.jobs == [] and found.suspects == 0
            assert found.subscribed == (why == "not settled")
            await asyncio.sleep(liveness.SUSPECT_S)
    assert await state_of(event_log, "victim") == "a"  # nobody suspected it


async def test_a_worker_that_died_idle_is_forgotten(
    own_redis: str,
    event_log: EventLog,
    rescuer: tuple[JobQueue, Sweeper],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveness, "FORGET_S", 0.0)
    monkeypatch.setattr(liveness, "SCAN_EVERY_S", 0.05)
    _, sweeper = rescuer
    async with alive(own_redis, event_log, "idle"):
        pass

    async def forgotten() -> bool:
        await sweeper.look(8, judge=True, lapsed=False, advertise=False, scan=True)
        return not await event_log.redis.hexists(keys.WORKERS_KEY, "idle")

    await poll(forgotten, "the idle dead worker forgotten", within=10, every=0.1)
    assert await event_log.redis.hexists(keys.WORKERS_KEY, "rescuer")


def test_dead_workers_are_remembered_for_a_lease_at_most() -> None:
    dead = DeadWorkers(keep_s=0.0, most=2)
    dead.note(["a"])
    assert dead.current() == []  # kept for no time at all
    dead = DeadWorkers(keep_s=60.0, most=2)
    dead.note(["a", "b", "c"])
    assert dead.current() == ["b", "c"]  # the oldest gives way
