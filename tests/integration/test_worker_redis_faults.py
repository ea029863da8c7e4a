"""Redis faults under a worker's writer, in-process on a real Redis: an append whose reply
was lost is not written twice, an append retried while Redis restarts, events Redis lost
written again by their worker, a loss before the attempt ends, a vanished generation
rebuilt."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.lifecycle import Generations
from tests.support.faults import reply_types
from tests.support.worker_parts import (  # noqa: F401 (fixtures: own_redis, event_log)
    POLICY,
    REQUEST,
    ScriptedProvider,
    all_events,
    claim_and_die,
    event_log_fixture,
    own_redis_fixture,
    show_old_attempt,
    sid,
    wait_seq,
)
from worker.attempt import run_generation
from worker.writer import StreamWriter

pytestmark = pytest.mark.anyio


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
