"""Viewers of streams a front-end does not watch yet (the herd that comes after a deploy
or a lost front-end) are answered from the parser too: the states of the streams they
ask for are read together, in one round trip per loop turn, each stream's topic is made
from its state, and once it settles its viewers join it, none through the app
(``fanout/arrivals.py``). A stream that is ended, unknown, or whose state cannot be read
sends its viewers the usual way, through the app, which answers them as before."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.exceptions

from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.fanout.repair import SETTLE_WAIT
from tests.support.fast_viewers import Conn, path, serving
from tests.support.monitor import commands_seen
from tests.support.polling import until

pytestmark = pytest.mark.anyio


async def _streams(log: EventLog, n: int, events: int) -> dict[str, str]:
    """``n`` new streams of ``events`` events each: each one's newest event id."""
    newest = {}
    for _ in range(n):
        sid = "cold-" + secrets.token_hex(4)
        await log.append(sid, [{"type": "data-n", "i": i} for i in range(events)], kind="feed")
        page = await log.read_page(sid, events - 1)
        newest[sid] = f"{page[0].seq}.{page[0].tag}"
    return newest


async def test_a_herd_resuming_at_streams_not_watched_here_is_answered_without_the_app(
    redis_url: str,
) -> None:
    """100 viewers of 20 streams the front-end does not watch, each at its stream's
    newest event, sent at once: one read of each stream's state (not one per viewer),
    every viewer answered from the parser, and each gets what follows."""
    async with serving(redis_url) as front:
        newest = await _streams(front.log, 20, 3)
        reads, answered = front.hub.arrivals.reads, front.fast.answered
        herd = [(sid, f"last-event-id: {last}") for sid, last in newest.items() for _ in range(5)]
        # What Redis runs in the window, seen by Redis: the front-end's own sweeps
        # (overdue jobs, webhooks) may read their keys in it; counted are the streams'.
        async with commands_seen(redis_url) as seen:
            conns = await asyncio.gather(*(Conn.get(front.port, path(s), h) for s, h in herd))
            for c in conns:
                await c.until(b"retry: ")
                assert c.got.startswith(b"HTTP/1.1 200"), c.got[:200]
        assert front.fast.answered == answered + 100
        assert front.hub.arrivals.reads == reads + 20
        timed = front.app.state.metrics.redis_read.collect()[0].samples
        count = next(s.value for s in timed if s.name.endswith("_count"))
        assert count >= 1  # the reads of state are Redis reads viewers wait for
        calls = {n: len(seen.touching("cold-", [n])) for n in ("hmget", "xrange")}
        # Each stream's state, and where it stands once its channel is subscribed (the
        # check that settles its topic): two a stream, none a viewer.
        assert calls.get("hmget", 0) <= 40, calls
        assert calls.get("xrange", 0) <= 20, calls  # each short history, at most once
        for sid in newest:
            await front.log.append(sid, [{"type": "data-n", "i": 3}], kind="feed")
        for c in conns:
            await c.until(b"id: 4.")
            assert c.ids() == [4]
        assert front.hub.viewers == 100 and front.app.state.slots.open == 100


async def test_an_ended_or_unknown_stream_and_a_failed_read_go_to_the_app(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(redis_url) as front:
        (ended,) = await _streams(front.log, 1, 3)
        await front.log.append(ended, [{"type": "finish"}], kind="feed")
        (live,) = await _streams(front.log, 1, 3)
        answered, reads = front.fast.answered, front.hub.arrivals.reads
        replays = [await Conn.get(front.port, path(ended)) for _ in range(5)]
        unknown = [await Conn.get(front.port, path("never-" + secrets.token_hex(3)))]
        for c in replays:
            await c.until(b"0\r\n\r\n")
            assert c.got.startswith(b"HTTP/1.1 200") and c.ids() == [1, 2, 3, 4]
        await unknown[0].until(b"\r\n\r\n")
        assert unknown[0].got.startswith(b"HTTP/1.1 404"), unknown[0].got[:200]
        assert front.fast.answered == answered  # all of them the app's
        assert front.hub.arrivals.reads >= reads + 2

        async def unreadable(stream_ids: list[str]) -> list[StreamInfo | None]:
            raise redis.exceptions.ConnectionError("Redis went away")

        monkeypatch.setattr(front.hub.log, "infos", unreadable)
        failed = [await Conn.get(front.port, path(live)) for _ in range(3)]
        for c in failed:
            await c.until(b"id: 3.")
            assert c.got.startswith(b"HTTP/1.1 200") and c.ids() == [1, 2, 3]
        # The first (at least) went to the app, which read the stream and made its topic;
        # those asking after it may be answered from that topic.
        assert front.fast.answered < answered + 3
        assert "reading the state of streams viewers wait for" in caplog.text
        for c in (*replays, *unknown, *failed):
            c.close()


async def test_a_topic_made_for_viewers_that_never_join_is_unwatched(redis_url: str) -> None:
    async with serving(redis_url) as front:
        left, kept = await _streams(front.log, 2, 1)
        hub = front.hub
        for sid in (left, kept):
            assert hub._watch_waited(sid, StreamInfo("feed", 1, None, None, ""))
            assert not hub._watch_waited(sid, StreamInfo("feed", 1, None, None, ""))
        viewer = await Conn.get(front.port, path(kept))  # from the start: joins the topic
        await viewer.until(b"id: 1.")
        await until(lambda: left not in hub._topics, "unwatched", within=SETTLE_WAIT + 5)
        assert kept in hub._topics and hub.viewers_of(kept) == 1
        viewer.close()
