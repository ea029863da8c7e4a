"""What the wake channels' messages make the chat pump and the approvals do (fakeredis:
the scheduling alone; tests/integration/test_idle_commands.py has the real channels).

A deadline pushed is swept when it comes, and nothing is read before; a deadline whose
push was lost is not found by any polling, but by the sweep that follows ``missed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from broadcaster.chat.approvals import Approvals
from broadcaster.chat.pump import ChatPump
from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.jobs import JobQueue
from tests.support.polling import poll, until

if TYPE_CHECKING:
    import fakeredis

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def running(approvals: Approvals) -> AsyncIterator[None]:
    task = asyncio.create_task(approvals.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def emptied(redis: fakeredis.FakeAsyncRedis, key: str, seconds: float = 3.0) -> None:
    async def empty() -> bool:
        return not await redis.zcard(key)

    await poll(empty, f"{key} emptied of its waits", seconds, every=0.01)


async def test_a_pushed_deadline_is_swept_when_it_comes_and_not_before() -> None:
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    approvals = Approvals(EventLog(redis), JobQueue(redis))
    async with running(approvals):
        await asyncio.sleep(0.1)
        assert approvals.sweeps == 0, "nothing read before the wake channels are joined"
        approvals.missed()  # as the wake channels say once joined
        await until(lambda: approvals.sweeps == 1, "the sweep", within=3, every=0.01)
        deadline = int(time.time() * 1000) + 300
        await redis.zadd(keys.waiting_key("gen-a"), {"gen-a": deadline})
        approvals.woken("wait", f"{deadline} gen-a")
        await asyncio.sleep(0.15)
        assert approvals.sweeps == 1, "nothing read before the deadline"
        # The generation is gone (no metadata): the sweep takes it out of the set.
        await until(lambda: approvals.sweeps == 2, "the sweep", within=3, every=0.01)
        await emptied(redis, keys.waiting_key("gen-a"))
        assert not approvals._deadlines
        await asyncio.sleep(0.2)
        assert approvals.sweeps == 2, "and nothing more once it is done"


async def test_a_lost_push_is_found_by_the_sweep_after_missed() -> None:
    import fakeredis

    redis = fakeredis.FakeAsyncRedis()
    approvals = Approvals(EventLog(redis), JobQueue(redis))
    async with running(approvals):
        approvals.missed()  # the wake channels joined
        await until(lambda: approvals.sweeps == 1, "the sweep", within=3, every=0.01)
        past = int(time.time() * 1000) - 1
        await redis.zadd(keys.waiting_key("gen-b"), {"gen-b": past})  # and no push
        await asyncio.sleep(0.3)
        assert await redis.zcard(keys.waiting_key("gen-b")) == 1, "no polling found it"
        approvals.missed()
        await until(lambda: approvals.sweeps == 2, "the sweep", within=3, every=0.01)
        await emptied(redis, keys.waiting_key("gen-b"))


def test_the_pump_wakes_for_a_chat_and_for_an_end_it_waits_on_only() -> None:
    pump = ChatPump(None, _Generations(), None, None, None, admission=lambda: None)  # type: ignore[arg-type, return-value]
    pump.woken("end", "gen-unknown")
    assert not pump._wake.is_set(), "an end no pending chat waits on wakes nothing"
    pump.woken("wait", "123 gen-x")
    assert not pump._wake.is_set()
    pump.woken("chat", "chat-1")
    assert pump._wake.is_set()
    pump._wake.clear()
    pump._remember("gen-1", "chat-1")
    pump.woken("end", "gen-1")
    assert pump._wake.is_set() and "gen-1" not in pump._waiting_on


class _Generations:
    log = None


def test_the_pump_reads_a_busy_chats_history_not_at_all() -> None:
    """A chat whose answer still runs is passed over on its record's head: its history
    (a whole list, however long) is read only once the chat is free to start more."""

    class Info:
        ended = False

    class Log:
        async def info(self, generation: str) -> Info:
            return Info()

    class Record:
        generation = "gen-running"

    class Chats:
        durability = None
        reads: list[bool] = []

        async def get(self, chat_id: str, *, whole: bool = True) -> Record:
            self.reads.append(whole)
            return Record()

    generations = _Generations()
    generations.log = Log()  # type: ignore[assignment]
    chats = Chats()
    pump = ChatPump(chats, generations, None, None, None, admission=lambda: None)  # type: ignore[arg-type, return-value]
    assert asyncio.run(pump.pump("chat-1")) == 0
    assert chats.reads == [False], "a busy chat's history was read"
    assert pump._waiting_on == {"gen-running": "chat-1"}, "its end does not wake the pump"
