"""What a viewer costs Redis when it connects to a stream the front-end already watches:
nothing, once the stream's topic is settled (one check of the log after its
subscription was confirmed) and holds the history (its tail, started from a viewer's
read of the log). A hub in-process on a real Redis, the log's reads counted."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Event
from broadcaster.fanout.config import HubConfig
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.push import SingleResolver
from tests.support.hub_parts import Wire, info_of
from tests.support.polling import until

pytestmark = pytest.mark.anyio


class ReadCountingLog(EventLog):
    """Counts what a viewer's connect would ask of the log: its state and its pages."""

    pages = 0
    infos = 0

    async def read_page(self, stream_id: str, after: int, count: int | None = None) -> list[Event]:
        self.pages += 1
        return await super().read_page(stream_id, after, count)

    async def _info(self, stream_id: str, at: int | None) -> object:  # type: ignore[override]
        self.infos += 1
        return await super()._info(stream_id, at)


@pytest.fixture
async def control(redis_async: Redis) -> Redis:
    return redis_async


async def test_viewers_from_the_start_of_a_watched_stream_read_nothing(control: Redis) -> None:
    """The first viewer of a quiet stream reads it from the log; the topic settles by one
    check once subscribed; a read after that starts the tail; every later viewer
    from the start is vouched for by the hub (``known``) and gets the history from
    memory; then every viewer gets every live event once, in order."""
    log = ReadCountingLog(control)
    sid = "cost-" + secrets.token_hex(4)
    for i in range(3):
        await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
    async with Hub(SingleResolver(control), log, HubConfig()) as hub:
        wires = [Wire(), Wire()]
        tasks = [asyncio.create_task(wires[0].drain(hub.follow(sid, 0, await info_of(log, sid))))]
        await until(lambda: wires[0].ids() == [1, 2, 3], "the first viewer read the log")
        head = await info_of(log, sid)
        await until(lambda: hub.known(sid, 3, head.tag) is not None, "the topic settled")
        pages = log.pages
        tasks.append(asyncio.create_task(wires[1].drain(hub.follow(sid, 0, head, wires[1].write))))
        await until(lambda: wires[1].ids() == [1, 2, 3], "the second viewer caught up")
        # One of the two reads started the tail (whichever came after the topic settled).
        assert log.pages - pages <= 1
        known = hub.known(sid, 0, None)
        assert known is not None and known.last_seq == 3 and known.tag == head.tag
        pages, infos = log.pages, log.infos
        late = [Wire() for _ in range(20)]
        for wire in late:
            info = hub.known(sid, 0, None)
            assert info is not None
            tasks.append(asyncio.create_task(wire.drain(hub.follow(sid, 0, info, wire.write))))
        await until(lambda: hub.viewers == 22, "the late viewers subscribed")
        assert (log.pages, log.infos) == (pages, infos), "a viewer from the start read the log"
        for i in range(3, 8):
            await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await asyncio.gather(*tasks)
    for wire in [*wires, *late]:
        assert wire.ids() == list(range(1, 10))
    assert (log.pages, log.infos) == (pages, infos)


async def test_a_topic_that_missed_an_event_is_filled_not_settled(control: Redis) -> None:
    """The check after the subscription finds the stream ahead of the topic's cursor (an
    event appended between the viewer's read and the subscription): the gap is filled
    from the log, and no viewer from the start is vouched for at the stale cursor."""
    log = ReadCountingLog(control)
    sid = "gap-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    stale = await info_of(log, sid)
    await log.append(sid, [{"type": "data-n", "i": 1}], kind="feed")  # before anyone watches
    async with Hub(SingleResolver(control), log, HubConfig()) as hub:
        wire = Wire()
        task = asyncio.create_task(wire.drain(hub.follow(sid, 1, stale, wire.write)))
        await until(lambda: wire.ids() == [2], "the stale cursor's gap was filled")
        head = await info_of(log, sid)
        await until(lambda: hub.known(sid, 2, head.tag) is not None, "settled at the log's seq")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await task
    assert wire.ids() == [2, 3]
