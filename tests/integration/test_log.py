"""The write path on a real Redis: seq assignment, conditional appends, terminal events,
expiry, hash tags."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from broadcaster.clients.publisher import Publisher
from broadcaster.core import connection, keys, sse
from broadcaster.core.eventlog import EventLog, StaleWriter, StreamEnded, StreamNotFound, WrongKind
from broadcaster.core.events import InvalidEvent
from broadcaster.generations.lifecycle import Generations, Held

pytestmark = pytest.mark.anyio


@pytest.fixture
async def event_log(redis_url: str) -> AsyncIterator[EventLog]:
    redis = connection.command_client(redis_url)
    yield EventLog(redis, ended_ttl=60, idle_ttl=600, page_size=7)
    await redis.aclose()


def sid() -> str:
    return "t-" + secrets.token_hex(6)


async def test_seq_is_assigned_by_redis_from_one(event_log: EventLog) -> None:
    s = sid()
    assert await event_log.append(s, [{"type": "a"}], kind="feed") == 1
    assert await event_log.append(s, [{"type": "b"}, {"type": "c"}], kind="feed") == 3
    events = [e for page in [await event_log.read_page(s, 0)] for e in page]
    assert [(e.seq, e.type) for e in events] == [(1, "a"), (2, "b"), (3, "c")]
    assert events[1].json() == {"type": "b"}
    raw = await event_log.redis.xrange(keys.log_key(s))
    assert [eid for eid, _ in raw] == [b"1-0", b"2-0", b"3-0"]


async def test_concurrent_producers_get_contiguous_seqs(event_log: EventLog) -> None:
    s = sid()

    async def produce(name: str) -> list[int]:
        return [
            await event_log.append(s, [{"type": "data-x", "p": name, "i": i}], kind="feed")
            for i in range(100)
        ]

    a, b, c = await asyncio.gather(produce("a"), produce("b"), produce("c"))
    assert sorted(a + b + c) == list(range(1, 301))
    events = [e for page in [p async for p in event_log.read_after(s, 0)] for e in page]
    assert [e.seq for e in events] == list(range(1, 301))
    for name in "abc":
        mine = [e.json()["i"] for e in events if e.json()["p"] == name]
        assert mine == list(range(100)), "each producer's events stay in its order"


async def test_conditional_append_refuses_a_stale_writer(event_log: EventLog) -> None:
    s = sid()
    await event_log.append(s, [{"type": "a"}, {"type": "b"}], kind="feed")
    assert await event_log.append(s, [{"type": "c"}], expect_seq=2) == 3
    with pytest.raises(StaleWriter) as err:
        await event_log.append(s, [{"type": "late"}], expect_seq=2)
    assert err.value.last_seq == 3
    info = await event_log.info(s)
    assert info is not None and info.last_seq == 3, "a refused append changes nothing"


async def test_owner_fencing(event_log: EventLog) -> None:
    s = sid()
    assert await Generations(event_log).create(s, {"prompt": "x"})
    first = await Generations(event_log).claim(s, "worker-1")
    assert first is not None and first.attempt == 1 and first.last_seq == 0
    await event_log.append(s, [{"type": "start"}], kind="generation", owner="worker-1")
    with pytest.raises(Held):  # worker-1 holds it: a second claim is a duplicate's
        await Generations(event_log).claim(s, "worker-2")
    await event_log.redis.hset(keys.meta_key(s), "held_at", 0)  # worker-1 was lost
    second = await Generations(event_log).claim(s, "worker-2")
    assert second is not None and second.attempt == 2 and second.last_seq == 1
    assert second.lost == 1
    with pytest.raises(StaleWriter):
        await event_log.append(s, [{"type": "text-delta"}], kind="generation", owner="worker-1")
    await event_log.append(s, [{"type": "data-retry"}], kind="generation", owner="worker-2")


async def test_nothing_after_a_terminal_event_and_the_stream_expires(event_log: EventLog) -> None:
    s = sid()
    await event_log.append(s, [{"type": "data-progress", "pct": 50}], kind="feed")
    redis = event_log.redis
    assert 590 <= await redis.ttl(keys.log_key(s)) <= 600, "running: the idle TTL"
    await event_log.append(s, [{"type": "finish"}], kind="feed")
    with pytest.raises(StreamEnded):
        await event_log.append(s, [{"type": "data-progress"}], kind="feed")
    info = await event_log.info(s)
    assert info is not None and info.ended == "finish" and info.last_seq == 2
    for key in (keys.log_key(s), keys.meta_key(s)):
        assert 50 <= await redis.ttl(key) <= 60, "ended: the ended TTL"


async def test_generation_status_follows_its_terminal_event(event_log: EventLog) -> None:
    for terminal, status in [("finish", "completed"), ("error", "failed"), ("abort", "cancelled")]:
        s = sid()
        await Generations(event_log).create(s, {"prompt": "x"})
        await Generations(event_log).claim(s, "w")
        await event_log.append(s, [{"type": terminal}], kind="generation", owner="w")
        meta = await event_log.meta(s)
        assert meta is not None and meta["status"] == status


async def test_kinds_do_not_mix(event_log: EventLog) -> None:
    s = sid()
    await Generations(event_log).create(s, {"prompt": "x"})
    with pytest.raises(WrongKind):
        await event_log.append(s, [{"type": "data-x"}], kind="feed")
    with pytest.raises(StreamNotFound):
        await event_log.append(sid(), [{"type": "text-delta"}], kind="generation")
    assert not await Generations(event_log).create(s, {"prompt": "again"})


async def test_text_is_appended_with_the_events_and_reset_on_retry(event_log: EventLog) -> None:
    s = sid()
    await Generations(event_log).create(s, {"prompt": "x"})
    await event_log.append(s, [{"type": "text-delta"}], kind="generation", text_append="Hel")
    await event_log.append(s, [{"type": "text-delta"}], kind="generation", text_append="lo")
    meta = await event_log.meta(s)
    assert meta is not None and meta["text"] == "Hello"
    await event_log.append(s, [{"type": "data-retry"}], kind="generation", text_reset="")
    meta = await event_log.meta(s)
    assert meta is not None and meta["text"] == ""


@pytest.mark.parametrize(
    "batch",
    [
        [],
        [{"no": "type"}],
        [{"type": "Upper"}],
        [{"type": "-x"}],
        [{"type": "x" * 65}],
        ["not an object"],
        [{"type": "finish"}, {"type": "after-terminal"}],
        [{"type": "ok", "v": float("nan")}],
    ],
)
async def test_invalid_events_are_refused_before_redis(event_log: EventLog, batch: list) -> None:
    s = sid()
    with pytest.raises(InvalidEvent):
        await event_log.append(s, batch, kind="feed")
    assert await event_log.info(s) is None


async def test_all_keys_of_a_stream_share_one_hash_tag() -> None:
    from redis.crc import key_slot

    s = "abc-123_X"
    slots = {key_slot(k.encode()) for k in keys.stream_keys(s)}
    assert len(slots) == 1
    assert all(k.count("{") == 1 and f"}}:{s}:" in k for k in keys.stream_keys(s))


async def test_streams_share_slot_groups_that_spread_over_the_cluster() -> None:
    """On a Cluster a front-end reads one slot group per blocking XREAD: many streams
    must share a group (bounding its reading connections), and the groups must still
    cover the slots of every primary."""
    from redis.crc import key_slot

    ids = [f"gen-{i}" for i in range(20_000)]
    slots = {key_slot(keys.log_key(i).encode()) for i in ids}
    assert len(slots) == keys.SLOT_GROUPS
    thirds = [sum(1 for s in slots if lo <= s < lo + 5462) for lo in (0, 5462, 10924)]
    assert min(thirds) > keys.SLOT_GROUPS // 5, thirds  # a 3-primary cluster's ranges


async def test_paged_reads_cover_a_long_stream(event_log: EventLog) -> None:
    s = sid()
    for start in range(0, 100, 25):
        await event_log.append(
            s, [{"type": "n", "i": i} for i in range(start, start + 25)], kind="feed"
        )
    pages = [p async for p in event_log.read_after(s, 10)]
    assert all(len(p) <= 7 for p in pages), "page_size bounds each read"
    assert [e.seq for p in pages for e in p] == list(range(11, 101))
    bounded = [e.seq for p in [p async for p in event_log.read_after(s, 10, until=20)] for e in p]
    assert bounded == list(range(11, 21))


async def test_history_tags_chain_each_event_to_those_before_it(event_log: EventLog) -> None:
    one, two, three = sid(), sid(), sid()
    for s in (one, two):
        await event_log.append(s, [{"type": "a"}, {"type": "b", "x": 1}], kind="feed")
    await event_log.append(three, [{"type": "a"}, {"type": "b", "x": 2}], kind="feed")
    await event_log.append(one, [{"type": "c"}], kind="feed")
    await event_log.append(two, [{"type": "c"}], kind="feed")
    tags = {s: [e.tag for e in await event_log.read_page(s, 0)] for s in (one, two, three)}
    assert tags[one] == tags[two], "the same history gives the same tags, batched or not"
    assert all(len(t) == 8 and int(t, 16) >= 0 for t in tags[one])
    assert len(set(tags[one])) == 3
    assert tags[three][0] == tags[one][0] and tags[three][1] != tags[one][1]
    info = await event_log.info(one, at=2)
    assert info is not None and info.tag_at == tags[one][1] and info.last_seq == 3
    info = await event_log.info(one, at=9)
    assert info is not None and info.tag_at is None


async def test_metadata_changes_are_applied_with_the_events(event_log: EventLog) -> None:
    s = sid()
    await event_log.append(s, [{"type": "a"}], kind="feed", meta={"usage": '{"n":1}', "x": "y"})
    meta = await event_log.meta(s)
    assert meta is not None
    assert meta["usage"] == '{"n":1}' and meta["x"] == "y" and meta["seq"] == "1"


def _without_time(messages: list[bytes]) -> tuple[list[bytes], list[int]]:
    """The messages with their heads' last field (the append's time) taken out, and it."""
    out, times = [], []
    for message in messages:
        head, nl, body = message.partition(b"\n")
        head, _, at = head.rpartition(b" ")
        out.append(head + nl + body)
        times.append(int(at))
    return out, times


async def test_every_append_is_published_as_the_frames_a_replay_would_send(
    event_log: EventLog,
) -> None:
    """The message is ``<first> <last> <tag> <T|-> <append ms>\\n`` and the SSE frames,
    byte for byte what ``sse.encode`` makes of the stored events; a batch over
    ``keys.PUSH_MAX_BYTES`` carries its seqs only."""
    s = sid()
    pubsub = event_log.redis.pubsub()
    await pubsub.subscribe(event_log.channel(s))
    await pubsub.get_message(timeout=1)  # the confirmation
    await event_log.append(s, [{"type": "a", "n": 1}], kind="feed")
    await event_log.append(s, [{"type": "b"}, {"type": "finish"}], kind="feed")
    messages = []
    while len(messages) < 2:
        m = await pubsub.get_message(timeout=5)
        assert m is not None, "every append is published"
        messages.append(m["data"])
    await pubsub.aclose()
    stored = await event_log.read_page(s, 0)
    tags = [e.tag for e in stored]
    messages, times = _without_time(messages)
    assert abs(times[0] - time.time() * 1000) < 60_000, "the append's time, in ms"
    assert messages[0] == f"1 1 {tags[0]} -\n".encode() + sse.encode(stored[0])
    assert messages[1] == f"2 3 {tags[2]} T\n".encode() + b"".join(
        sse.encode(e) for e in stored[1:]
    )
    assert messages[1].endswith(b"data: [DONE]\n\n")


async def test_a_large_batch_is_announced_not_published_whole(redis_url: str) -> None:
    redis = connection.command_client(redis_url)
    log = EventLog(redis, max_event_bytes=2 * keys.PUSH_MAX_BYTES)
    s = sid()
    pubsub = redis.pubsub()
    await pubsub.subscribe(log.channel(s))
    await pubsub.get_message(timeout=1)
    await log.append(s, [{"type": "big", "x": "y" * keys.PUSH_MAX_BYTES}], kind="feed")
    m = await pubsub.get_message(timeout=5)
    assert m is not None
    tag = (await log.read_page(s, 0))[0].tag
    assert _without_time([m["data"]])[0] == [f"1 1 {tag} -\n".encode()]
    await pubsub.aclose()
    await redis.aclose()


async def test_channels_are_per_database(redis_url: str) -> None:
    """Pub/sub ignores databases: two deployments in two databases of one server must not
    hear each other's streams."""
    base = redis_url.rsplit("/", 1)[0]
    one, two = connection.command_client(base + "/1"), connection.command_client(base + "/2")
    try:
        assert EventLog(one).channel("job-1") != EventLog(two).channel("job-1")
        assert EventLog(one).channel("job-1") == keys.push_channel("job-1", 1).encode()
    finally:
        await one.aclose()
        await two.aclose()


async def test_appends_to_many_streams_in_one_round_trip(event_log: EventLog) -> None:
    a, b, ended = sid(), sid(), sid()
    await event_log.append(ended, [{"type": "finish"}], kind="feed")
    results = await event_log.append_many(
        [(a, [{"type": "x"}]), (b, [{"type": "x"}, {"type": "y"}]), (ended, [{"type": "z"}])]
    )
    assert results[:2] == [1, 2]
    assert isinstance(results[2], StreamEnded)
    assert [e.type for e in await event_log.read_page(b, 0)] == ["x", "y"]
    info = await event_log.info(b)
    assert info is not None and info.last_seq == 2 and info.tag


async def test_publisher_publishes_to_many_streams_at_once(redis_url: str) -> None:
    async with Publisher.from_url(redis_url) as pub:
        a, b = sid(), sid()
        assert await pub.publish_many({a: {"type": "x"}, b: [{"type": "x"}, {"type": "y"}]}) == {
            a: 1,
            b: 2,
        }
        with pytest.raises(WrongKind):
            await Generations(pub._log).create(a + "g", {"prompt": "p"})
            await pub.publish_many({a + "g": {"type": "x"}})
