"""Viewer counts of many streams written together: one script call per slot group for
the streams a front-end's joins and leaves of one moment touched, not one per stream
(``PresenceStore.set_many``, ``Presence``'s flush), each stream's count, total and
notice as if written alone. A real Redis, the script calls seen by Redis itself
(``MONITOR``): only those on this test's streams, as other tests' processes may run
scripts on the same server meanwhile."""

from __future__ import annotations

import secrets

import pytest
from redis.asyncio import Redis

from broadcaster.core import keys
from broadcaster.presence.counts import PresenceStore
from broadcaster.presence.tracker import Presence
from tests.support.monitor import Seen, commands_seen
from tests.support.polling import poll

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(redis_async: Redis) -> Redis:
    return redis_async


def _script_calls(seen: Seen, prefix: str) -> int:
    """The script calls in ``seen`` on streams whose ids begin with ``prefix``."""
    return len(seen.touching(prefix, ["EVALSHA", "EVAL"]))


def _same_group(n: int, prefix: str) -> list[str]:
    """``n`` stream ids of one slot group."""
    first = f"{prefix}-{secrets.token_hex(4)}"
    group = keys.outbox_key(first)
    found = [first]
    while len(found) < n:
        sid = f"{prefix}-{secrets.token_hex(4)}"
        if keys.outbox_key(sid) == group:
            found.append(sid)
    return found


async def _counted(store: PresenceStore, streams: list[str], want: list[int]) -> None:
    """Wait until the counts of ``streams`` are ``want`` (the flush is a moment later)."""

    async def probe() -> bool:
        return [v.count for v in await store.viewers(streams)] == want

    await poll(probe, "the counts written", within=10)


async def test_a_flush_writes_each_group_of_streams_in_one_call(
    client: Redis, redis_url: str
) -> None:
    tag = f"p{secrets.token_hex(3)}"
    one, other = _same_group(30, f"{tag}a"), _same_group(12, f"{tag}b")
    if keys.outbox_key(one[0]) == keys.outbox_key(other[0]):
        other = _same_group(12, f"{tag}c")  # two groups, whatever the draw
    assert keys.outbox_key(one[0]) != keys.outbox_key(other[0])
    store = PresenceStore(client)
    changes: list[tuple[int, int]] = []
    async with Presence(store, on_change=lambda old, new: changes.append((old, new))) as presence:
        await store.set(f"warm-{secrets.token_hex(4)}", "", 0)  # the script is loaded
        async with commands_seen(redis_url) as seen:
            for n, sid in enumerate(one + other):
                for _ in range(n % 3 + 1):
                    presence.join(sid, "ann" if n % 2 else None)
            want = [n % 3 + 1 for n in range(len(one + other))]
            await _counted(store, one + other, want)
        calls = _script_calls(seen, tag)
        found = await store.viewers(one + other)
        assert [v.count for v in found] == [n % 3 + 1 for n in range(len(one + other))]
        assert found[1].subjects == ["ann"] and found[0].subjects == []
        assert calls == 2, f"{calls} script calls for 42 streams of two slot groups"
        assert sorted(changes) == sorted((0, n % 3 + 1) for n in range(len(one + other)))
        async with commands_seen(redis_url) as seen:
            for sid in one:
                presence.leave(sid, None if one.index(sid) % 2 == 0 else "ann")
            await _counted(store, one, [n % 3 for n in range(len(one))])
        assert _script_calls(seen, tag) == 1


async def test_the_groups_calls_share_one_round_trip_and_survive_a_script_flush(
    client: Redis, redis_url: str
) -> None:
    """Streams of many slot groups: one script call per group, all in one pipeline; a
    Redis that lost its scripts (a restart, ``SCRIPT FLUSH``) has it loaded again, and
    every count is written."""
    tag = f"many-{secrets.token_hex(3)}-"
    streams = [f"{tag}{secrets.token_hex(4)}" for _ in range(60)]
    groups = {keys.outbox_key(s) for s in streams}
    assert len(groups) > 20
    store = PresenceStore(client)
    await store.beat("fe-a")  # alive: its counts count
    await client.script_flush()
    changes = await store.set_many("fe-a", [(s, 2, ()) for s in streams])
    assert changes == [(0, 2)] * len(streams)
    async with commands_seen(redis_url) as seen:
        again = await store.set_many("fe-a", [(s, 1, ("bo",)) for s in streams])
    assert again == [(2, 1)] * len(streams)
    assert _script_calls(seen, tag) == len(groups)
    found = await store.viewers(streams)
    assert all(v.count == 1 and v.subjects == ["bo"] for v in found)
