"""The hub in-process on a real Redis: the replay/live seam, gaps, slow viewers that
catch up, viewers that leave being forgotten, and the pub/sub connection lost or refused.
Race windows are opened on purpose (appends injected *during* the replay, messages that
are never published) rather than hoped for."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from broadcaster.core import connection, keys, sse
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.core.events import Event
from broadcaster.fanout.config import HubConfig
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.pubsub import Address
from broadcaster.fanout.push import SingleResolver
from tests.support.hub_parts import Wire, info_of
from tests.support.polling import poll, until
from tests.support.procs import parse_sse

pytestmark = pytest.mark.anyio


class RacingLog(EventLog):
    """An event log whose replay reads let a producer append in between: each page read
    is preceded by ``burst`` appends, the worst case for the replay/live seam."""

    def __init__(self, redis: Redis, stream_id: str, burst: int, rounds: int) -> None:
        super().__init__(redis, page_size=5)
        self.stream_id = stream_id
        self.burst = burst
        self.rounds = rounds
        self.next_i = 0

    async def read_page(self, stream_id: str, after: int, count: int | None = None) -> list[Event]:
        if self.rounds > 0:
            self.rounds -= 1
            await self.append_burst()
        return await super().read_page(stream_id, after, count)

    async def append_burst(self) -> None:
        batch = [{"type": "data-n", "i": self.next_i + k} for k in range(self.burst)]
        self.next_i += self.burst
        await self.append(self.stream_id, batch, kind="feed")


Clients = tuple[SingleResolver, Redis]
"""Where the hub subscribes, and the command client it shares with the log."""


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[Clients]:
    control = connection.command_client(redis_url)
    yield SingleResolver(control), control
    await control.aclose()


class SilentLog(EventLog):
    """Appends without publishing: the message is lost, as if the subscriber had not
    been there. Only the log holds those events."""

    def channel(self, stream_id: str) -> bytes:
        return b""


async def kill_pubsub(control: Redis) -> None:
    """Cut every pub/sub connection from the server side, as Redis does to a subscriber
    over its output buffer limit, or a failover does."""
    await control.execute_command("CLIENT", "KILL", "TYPE", "pubsub")


async def collect(chunks: AsyncIterator[bytes], seconds: float = 20) -> bytes:
    out = b""
    async with asyncio.timeout(seconds):
        async for chunk in chunks:
            out += chunk
    return out


def ids_of(raw: bytes) -> list[int]:
    events, _, _ = parse_sse(raw)
    return [int(e.id.split(".")[0]) for e in events if e.id]


async def test_appends_during_the_replay_arrive_once(clients: Clients) -> None:
    resolver, control = clients
    sid = "seam-" + secrets.token_hex(4)
    log = RacingLog(control, sid, burst=7, rounds=6)
    await log.append_burst()  # the stream exists, 7 events
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig()) as hub:
        follow = hub.follow(sid, 0, info)

        async def finish_later() -> None:
            await asyncio.sleep(0.3)
            await log.append_burst()
            await log.append(sid, [{"type": "finish"}], kind="feed")

        finisher = asyncio.create_task(finish_later())
        raw = await collect(follow)
        await finisher
    total = 7 * 8 + 1  # first burst, six during the replay, one live, then finish
    assert ids_of(raw) == list(range(1, total + 1))
    assert raw.endswith(b"data: [DONE]\n\n")
    assert hub.viewers == 0 and hub.streams == 0


async def test_a_new_topic_at_the_resume_point_gets_what_came_before_it_subscribed(
    clients: Clients,
) -> None:
    """A viewer at the newest event of a stream nobody watches here reads nothing more
    of the log itself: the events appended after its read of the stream's state and
    before its subscription (their messages went to nobody) reach it through the new
    topic's first check, in order and once; then live events follow."""
    resolver, control = clients
    sid = "at-" + secrets.token_hex(4)
    log = EventLog(control)
    await log.append(sid, [{"type": "data-n", "i": i} for i in range(3)], kind="feed")
    info = await info_of(log, sid)  # the viewer read where the stream stood: 3
    await log.append(sid, [{"type": "data-n", "i": 3}, {"type": "data-n", "i": 4}], kind="feed")
    async with Hub(resolver, log, HubConfig()) as hub:
        follow = hub.follow(sid, 3, info)

        async def finish_later() -> None:
            await until(lambda: hub.viewers == 1, "subscribed")
            await asyncio.sleep(0.3)
            await log.append(sid, [{"type": "finish"}], kind="feed")

        finisher = asyncio.create_task(finish_later())
        raw = await collect(follow)
        await finisher
    assert ids_of(raw) == [4, 5, 6]


async def test_a_slow_viewer_catches_up_from_redis(clients: Clients) -> None:
    resolver, control = clients
    log = EventLog(control, page_size=50)
    sid = "slow-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig(viewer_buffer=4)) as hub:
        slow = hub.follow(sid, 0, info)
        fast = hub.follow(sid, 0, info)
        first_slow = await anext(slow)  # subscribed and replayed; now it stops reading
        fast_task = asyncio.create_task(collect(fast))
        for i in range(1, 300):
            await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        fast_raw = await fast_task  # the fast viewer finished while the slow one slept
        assert ids_of(fast_raw) == list(range(1, 302))
        # the slow viewer's buffer stayed bounded while it did not read
        subs = [s for t in hub._topics.values() for s in t.subs]
        assert subs and all(len(s._buf) <= 4 for s in subs)
        assert any(s.overflowed for s in subs)
        slow_raw = first_slow + await collect(slow)
    assert ids_of(slow_raw) == list(range(1, 302)), "caught up from Redis, nothing lost"


async def test_a_gap_in_live_events_is_filled_from_redis_once_per_stream(
    clients: Clients,
) -> None:
    resolver, control = clients
    log = EventLog(control)
    silent = SilentLog(control)
    sid = "gap-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig()) as hub:
        tasks = [asyncio.create_task(collect(hub.follow(sid, 1, info))) for _ in range(3)]
        await until(lambda: hub.viewers == 3, "three viewers subscribed")
        await asyncio.sleep(0.1)
        for t in ("b", "c"):  # their messages are lost
            await silent.append(sid, [{"type": t}], kind="feed")
        await log.append(sid, [{"type": "d"}], kind="feed")  # announces seq 4: a gap
        await log.append(sid, [{"type": "finish"}], kind="feed")
        raws = await asyncio.gather(*tasks)
        assert hub.repairer.fills == 1, "one read of the log for the stream, not per viewer"
    for raw in raws:
        assert ids_of(raw) == [2, 3, 4, 5]


async def test_leaving_viewers_are_forgotten(clients: Clients) -> None:
    resolver, control = clients
    log = EventLog(control)
    sids = ["leave-" + secrets.token_hex(4) for _ in range(3)]
    for sid in sids:
        await log.append(sid, [{"type": "a"}], kind="feed")
    async with Hub(resolver, log, HubConfig(keepalive=0.05)) as hub:
        gens = []
        for sid in sids:
            info = await info_of(log, sid)
            for _ in range(4):
                g = hub.follow(sid, 0, info)
                await anext(g)
                gens.append(g)
        assert hub.viewers == 12 and hub.streams == 3
        topics = list(hub._topics.values())
        assert len(topics) == 3 and all(t.watched for t in topics)
        assert await anext(gens[0]) == b": ping\n\n", "keepalive during silence"
        for g in gens:
            await g.aclose()
        assert hub.viewers == 0 and hub.streams == 0
        assert not hub._topics and not any(t.watched for t in topics)  # no longer fanned out


async def test_drain_ends_open_viewers(clients: Clients) -> None:
    resolver, control = clients
    log = EventLog(control)
    sid = "drain-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig()) as hub:
        tasks = [asyncio.create_task(collect(hub.follow(sid, 0, info))) for _ in range(5)]
        await asyncio.sleep(0.1)
        hub.drain()
        raws = await asyncio.gather(*tasks)
    assert all(ids_of(r) == [1] and b"[DONE]" not in r for r in raws)


async def test_what_was_published_while_the_connection_was_down_is_recovered(
    clients: Clients,
) -> None:
    resolver, control = clients
    log = EventLog(control)
    silent = SilentLog(control)
    sid = "drop-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig()) as hub:
        task = asyncio.create_task(collect(hub.follow(sid, 0, info)))
        await until(lambda: hub.viewers == 1, "subscribed")
        await asyncio.sleep(0.1)
        await kill_pubsub(control)
        # Published while nobody listened (silent: the reconnect may already be back).
        for t in ("b", "c"):
            await silent.append(sid, [{"type": t}], kind="feed")
        await until(lambda: hub.push.reconnects >= 1, "the subscriber reconnected")
        await until(lambda: hub.push.connected, "subscribed again")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        raw = await task
    assert ids_of(raw) == [1, 2, 3, 4]


async def test_a_lost_last_message_of_a_quiet_stream_is_found(clients: Clients) -> None:
    """Nothing follows it, so no gap ever shows: the check of quiet streams finds it."""
    resolver, control = clients
    log = EventLog(control)
    silent = SilentLog(control)
    sid = "quiet-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig(quiet_check=0.3)) as hub:
        task = asyncio.create_task(collect(hub.follow(sid, 0, info), seconds=10))
        await until(lambda: hub.viewers == 1, "subscribed")
        await silent.append(sid, [{"type": "finish"}], kind="feed")
        raw = await task
    assert ids_of(raw) == [1, 2] and raw.endswith(b"data: [DONE]\n\n")


async def test_live_events_are_pushed_not_read(clients: Clients) -> None:
    """After the replay, nothing is read from the log: every event came in a message."""
    resolver, control = clients
    log = CountingLog(control)
    sid = "pushed-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig()) as hub:
        wires = [Wire() for _ in range(20)]
        viewers = [asyncio.create_task(w.drain(hub.follow(sid, 0, info, w.write))) for w in wires]
        await until(lambda: hub.viewers == 20, "subscribed")
        await asyncio.sleep(0.2)
        replays = log.reads
        await _publish(log, sid, 200)
        await asyncio.gather(*viewers)
    assert log.reads == replays, "no read of the log after the replays"
    for w in wires:
        assert w.ids() == list(range(1, 203))


async def test_a_batch_too_large_to_publish_is_read_from_the_log(clients: Clients) -> None:
    resolver, control = clients
    log = EventLog(control, max_event_bytes=keys.PUSH_MAX_BYTES * 2)
    sid = "large-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    big = "x" * keys.PUSH_MAX_BYTES
    async with Hub(resolver, log, HubConfig()) as hub:
        wire = Wire()
        viewer = asyncio.create_task(wire.drain(hub.follow(sid, 0, info, wire.write)))
        await until(lambda: hub.viewers == 1, "subscribed")
        await asyncio.sleep(0.1)
        await log.append(sid, [{"type": "data-big", "big": big}], kind="feed")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await asyncio.wait_for(viewer, 10)
        assert hub.repairer.fills == 1
    assert wire.ids() == [1, 2, 3]
    assert big.encode() in b"".join(wire.data)


@pytest.mark.parametrize("loss", ["all", "newest", "rewritten"])
async def test_viewers_of_a_stream_that_lost_events_are_ended_not_left_waiting(
    clients: Clients, loss: str
) -> None:
    """Regression: after Redis came back without its newest writes, the reader's cursor
    stayed above the stream's new end, so live viewers waited for ids that would never
    come (or would be a different stream's). Now the reader checks its streams after a
    reconnect and ends those responses, without [DONE]: each viewer reconnects and is
    told (409 or 404). ``rewritten``: the stream was written again, differently, past
    the cursor before the reader came back; its history tag at the cursor tells."""
    resolver, control = clients
    log = EventLog(control)
    sid = "lost-" + secrets.token_hex(4)
    kept = await log.append(sid, [{"type": "a"}, {"type": "b"}], kind="feed")
    await log.append(sid, [{"type": "c"}, {"type": "d"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig(keepalive=0.2)) as hub:
        task = asyncio.create_task(collect(hub.follow(sid, 0, info), seconds=10))
        await asyncio.sleep(0.3)  # replayed 1..4; the reader's cursor is at 4
        await until(lambda: hub.push.connected, "subscribed")
        # What Redis holds after the loss: nothing, or an older copy (events 1..2).
        if loss == "all":
            await control.delete(*keys.stream_keys(sid))
        elif loss == "rewritten":
            # In one step, as the reader would find it on reconnecting: another history
            # of 6 events (other tags), written while the reader was away.
            async with control.pipeline(transaction=True) as pipe:
                pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                pipe.delete(keys.log_key(sid))
                for i in range(1, 7):
                    fields = {"t": "x", "d": f'{{"type":"x","i":{i}}}', "h": f"{i:08x}"}
                    pipe.xadd(keys.log_key(sid), fields, id=f"{i}-0")  # type: ignore[arg-type]
                await pipe.execute()
        else:
            await control.xdel(keys.log_key(sid), "3-0", "4-0")
            await control.hset(keys.meta_key(sid), "seq", kept)
        if loss != "rewritten":
            await kill_pubsub(control)
        raw = await task  # ended: before the fix this waited, sending pings, for ever
    assert ids_of(raw) == [1, 2, 3, 4]
    assert b"[DONE]" not in raw


# --- the direct-write path: the reader writes live frames straight to a caught-up
# viewer's socket. Whatever mix of direct writes and yielded chunks a viewer gets, the
# bytes on its wire hold every event once, in order. The "socket" is a list that both
# paths append to in the order they happen, as a transport would.


async def _publish(log: EventLog, sid: str, n: int) -> None:
    for i in range(n):
        await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        if i % 7 == 0:
            await asyncio.sleep(0.002)  # some reads bring one event, some several
    await log.append(sid, [{"type": "finish"}], kind="feed")


@pytest.mark.parametrize("refuse_every", [0, 3])
async def test_direct_and_yielded_frames_make_one_ordered_stream(
    clients: Clients, refuse_every: int
) -> None:
    resolver, control = clients
    log = EventLog(control, page_size=20)
    sid = "direct-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": -1}], kind="feed")
    info = await info_of(log, sid)
    wires = [Wire(refuse_every) for _ in range(5)]
    async with Hub(resolver, log, HubConfig()) as hub:
        viewers = [asyncio.create_task(w.drain(hub.follow(sid, 0, info, w.write))) for w in wires]
        await asyncio.sleep(0.2)  # every viewer replayed seq 1 and is waiting: live now
        await _publish(log, sid, 300)
        await asyncio.gather(*viewers)
        assert hub.viewers == 0 and hub.streams == 0
    for w in wires:
        assert w.ids() == list(range(1, 303)), "every event once, in order"
        assert b"".join(w.data).endswith(b"data: [DONE]\n\n")
        assert w.direct > 0, "live frames went straight to the socket"
        if refuse_every:
            assert w.refused > 0, "a full socket sent frames down the buffered path"


async def test_messages_of_one_read_go_out_in_one_write_per_viewer(clients: Clients) -> None:
    """200 appends in one pipeline: Redis runs them in one go and sends their 200
    messages to the subscriber together, so the hub reads many at a time. Each caught-up
    viewer gets what one read brought in one write, not one write per message."""
    resolver, control = clients
    log = EventLog(control)
    sid = "coalesce-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": -1}], kind="feed")
    info = await info_of(log, sid)
    wires = [Wire() for _ in range(5)]
    async with Hub(resolver, log, HubConfig()) as hub:
        viewers = [asyncio.create_task(w.drain(hub.follow(sid, 0, info, w.write))) for w in wires]
        await until(lambda: hub.viewers == 5, "subscribed")
        await asyncio.sleep(0.2)  # every viewer replayed seq 1 and is waiting: live now
        batches = [(sid, [{"type": "data-n", "i": i}]) for i in range(200)]
        await log.append_many(batches)
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await asyncio.gather(*viewers)
    for w in wires:
        assert w.ids() == list(range(1, 203)), "every event once, in order"
        assert w.direct < 100, f"{w.direct} writes for 200 messages read together"


async def test_a_viewer_joining_mid_stream_gets_replay_then_direct(
    clients: Clients,
) -> None:
    resolver, control = clients
    log = EventLog(control, page_size=10)
    sid = "late-" + secrets.token_hex(4)
    for i in range(50):
        await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
    async with Hub(resolver, log, HubConfig()) as hub:
        early = Wire()
        info = await info_of(log, sid)
        first = asyncio.create_task(early.drain(hub.follow(sid, 0, info, early.write)))
        await asyncio.sleep(0.1)
        publisher = asyncio.create_task(_publish(log, sid, 100))
        await asyncio.sleep(0.05)
        late = Wire()
        info = await info_of(log, sid)
        second = asyncio.create_task(late.drain(hub.follow(sid, 10, info, late.write)))
        await asyncio.gather(first, second, publisher)
    assert early.ids() == list(range(1, 152))
    assert late.ids() == list(range(11, 152))


async def test_keepalives_go_straight_to_a_socket_that_takes_them(clients: Clients) -> None:
    resolver, control = clients
    log = EventLog(control)
    sid = "ping-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    async with Hub(resolver, log, HubConfig(keepalive=0.05)) as hub:
        takes, refuses = Wire(), Wire(refuse_every=1)
        viewers = [
            asyncio.create_task(w.drain(hub.follow(sid, 0, info, w.write)))
            for w in (takes, refuses)
        ]

        async def three_pings_each() -> bool:
            return min(w.data.count(sse.PING) for w in (takes, refuses)) >= 3

        await poll(three_pings_each, "three keepalives on each viewer", within=10)
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await asyncio.gather(*viewers)
    assert takes.direct >= 3, "pings written directly"
    assert refuses.direct == 0 and refuses.data.count(sse.PING) >= 3, "pings yielded instead"
    for w in (takes, refuses):
        assert w.ids() == [1, 2] and b"".join(w.data).endswith(b"data: [DONE]\n\n")


class FailoverResolver(SingleResolver):
    """Fails as redis-py's cluster client does while a failover is under way: with
    ``RedisClusterException``, which is not a ``RedisError``, from finding the node and
    from the recovery that follows (its slot-map refresh)."""

    def __init__(self, commands: Redis, failures: int) -> None:
        super().__init__(commands)
        self.failures = failures

    async def address(self, node: str) -> Address:
        if self.failures > 0:
            self.failures -= 1
            raise SlotNotCoveredError("slot 1234 is not covered by the cluster")
        return await super().address(node)

    async def refresh(self) -> None:
        if self.failures > 0:
            raise RedisClusterException("All slots are not covered after query all startup_nodes")


async def test_the_subscriber_outlives_errors_that_are_not_redis_errors(
    clients: Clients,
) -> None:
    """A reader that died on such an error left its viewers waiting for ever (found in
    the cluster failover test): it must log, back off and connect again."""
    _, control = clients
    log = EventLog(control)
    sid = "outlive-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    info = await info_of(log, sid)
    failing = FailoverResolver(control, failures=3)
    async with Hub(failing, log, HubConfig()) as hub:
        wire = Wire()
        viewer = asyncio.create_task(wire.drain(hub.follow(sid, 0, info, wire.write)))
        await until(lambda: hub.push.connected, "subscribed at last")
        await kill_pubsub(control)
        await _publish(log, sid, 20)
        await asyncio.wait_for(viewer, 30)
    assert failing.failures == 0, "the connects failed as planned"
    assert wire.ids() == list(range(1, 23)), "every event once, in order, after the failures"


class CountingLog(EventLog):
    """Counts the pages read from Redis."""

    reads = 0

    async def read_page(self, stream_id: str, after: int, count: int | None = None) -> list[Event]:
        self.reads += 1
        await asyncio.sleep(0.01)  # a read takes a moment, so joiners overlap
        return await super().read_page(stream_id, after, count)


async def test_late_joiners_of_an_ended_stream_share_one_read(
    clients: Clients,
) -> None:
    resolver, control = clients
    log = CountingLog(control, page_size=50)
    sid = "burst-" + secrets.token_hex(4)
    for start in range(0, 400, 100):
        await log.append(
            sid, [{"type": "data-n", "i": i} for i in range(start, start + 100)], kind="feed"
        )
    await log.append(sid, [{"type": "finish"}], kind="feed")
    info = await info_of(log, sid)
    assert info.ended
    async with Hub(resolver, log, HubConfig()) as hub:
        wires = [Wire() for _ in range(30)]
        # One joiner leaves early, mid-read: the others must not lose the read it started.
        quitter = asyncio.create_task(Wire().drain(hub.follow(sid, 0, info)))
        await asyncio.sleep(0.005)
        quitter.cancel()
        await asyncio.gather(*(w.drain(hub.follow(sid, 0, info)) for w in wires))
        with contextlib.suppress(asyncio.CancelledError):
            await quitter
        assert not hub.replays._histories, "dropped once the last joiner finished"
    for w in wires:
        assert w.ids() == list(range(1, 402))
    pages = 1 + 400 // 50  # the first page is short (64), the rest aim at page_size
    assert log.reads <= pages + 2, f"{log.reads} reads for 30 joiners"


class SwallowingLog(EventLog):
    """A log whose check swallows the cancel that lands in it, as redis-py can while it
    reconnects: the check returns as if nothing had happened."""

    checking = False

    async def heads(self, stream_ids: Sequence[str]) -> list[tuple[int, str]]:
        self.checking = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return [(0, "")] * len(stream_ids)


async def test_shutdown_does_not_depend_on_a_cancel_being_obeyed(clients: Clients) -> None:
    """Regression: the check loop swallowed its cancel inside redis-py and then waited for
    ever for the next check, so the front-end never finished shutting down."""
    resolver, control = clients
    log = SwallowingLog(control)
    sid = "swallow-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "a"}], kind="feed")
    info = await info_of(log, sid)
    hub = Hub(resolver, log, HubConfig(quiet_check=0.2))
    async with asyncio.timeout(10):
        async with hub:
            viewer = asyncio.create_task(collect(hub.follow(sid, 0, info)))
            await until(lambda: log.checking, "a check under way")
        raw = await viewer
    assert ids_of(raw) == [1] and b"[DONE]" not in raw, "drained, not ended"


async def test_a_viewer_resuming_where_its_topic_stands_reads_nothing_from_the_log(
    clients: Clients,
) -> None:
    """The reconnect of a viewer whose front-end went away: the stream is watched here
    and its topic settled, so the hub vouches for the resume point (at the cursor, or a
    few events behind it, in the topic's tail) and sends what follows it with no read
    of the log."""
    resolver, control = clients
    log = CountingLog(control)
    sid = "warm-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    async with Hub(resolver, log, HubConfig()) as hub:
        first = Wire()
        watching = asyncio.create_task(first.drain(hub.follow(sid, 0, await info_of(log, sid))))
        await until(lambda: hub.viewers == 1, "the first viewer subscribed")
        one = (await info_of(log, sid)).tag
        # Once subscribed, one check of the log confirms the cursor: the topic settles.
        await until(lambda: hub.known(sid, 1, one) is not None, "the topic settled")
        for i in range(1, 5):
            await log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        head = await info_of(log, sid)
        await until(lambda: hub.known(sid, 5, head.tag) is not None, "the topic settled")
        tags = {e.seq: e.tag for e in await log.read_page(sid, 0)}
        assert hub.known(sid, 3, tags[3]) == StreamInfo("", 5, None, tags[3], head.tag)
        assert hub.known(sid, 3, tags[4]) is None, "a tag the stream has not at 3"
        reads = log.reads
        at_head, behind = Wire(), Wire()
        resumed = [
            asyncio.create_task(at_head.drain(hub.follow(sid, 5, head, at_head.write))),
            asyncio.create_task(behind.drain(hub.follow(sid, 2, head, behind.write))),
        ]
        await until(lambda: hub.viewers == 3, "the resumed viewers subscribed")
        await _publish(log, sid, 20)
        await asyncio.gather(watching, *resumed)
        assert hub.known(sid, 26, head.tag) is None  # ended: a resume asks the log
    assert first.ids() == list(range(1, 27))
    assert at_head.ids() == list(range(6, 27))
    assert behind.ids() == list(range(3, 27))
    assert log.reads == reads, "a resumed viewer read the log"


async def test_an_unsettled_topic_is_not_trusted_for_a_resume(clients: Clients) -> None:
    """A topic's first cursor is what the log said before its subscription was
    confirmed; an event appended in between is unknown to it until a message shows the
    gap. A viewer resuming at that stale cursor still reads the log, and gets it."""
    resolver, control = clients
    log = EventLog(control)
    silent = SilentLog(control)  # the event appended "between": no message for it
    sid = "stale-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    stale = await info_of(log, sid)
    await silent.append(sid, [{"type": "data-n", "i": 1}], kind="feed")
    async with Hub(resolver, log, HubConfig()) as hub:
        first, second = Wire(), Wire()
        a = asyncio.create_task(first.drain(hub.follow(sid, 1, stale)))
        await until(lambda: hub.viewers == 1, "the first viewer subscribed")
        assert hub.known(sid, 1, stale.tag) is None
        b = asyncio.create_task(second.drain(hub.follow(sid, 1, stale, second.write)))
        await until(lambda: hub.viewers == 2, "the second viewer subscribed")
        await until(lambda: second.ids() == [2], "the second viewer caught up from the log")
        await log.append(sid, [{"type": "data-n", "i": 2}], kind="feed")  # shows the gap
        head = await info_of(log, sid)
        await until(lambda: hub.known(sid, 3, head.tag) is not None, "settled (gap filled)")
        await log.append(sid, [{"type": "finish"}], kind="feed")
        await asyncio.gather(a, b)
    assert first.ids() == [2, 3, 4] and second.ids() == [2, 3, 4]
