"""Failures kept where they happen (``core/contain.py``): a viewer whose delivery raises is
cut and the stream's other viewers get the run; one stream's run that raises costs no
other stream its run; a pub/sub reply whose handling raises costs the connection nothing;
a message whose frames no append made is read from the log instead; the parsers of
stored entries and of runs read what is malformed as an ``error`` in its place; and
background loops go on after a round that raised. No server: the hub is built on a Redis
client that is never connected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from broadcaster.core import contain, sse
from broadcaster.core.eventlog import EventLog, entries_to_events
from broadcaster.core.events import Event, malformed
from broadcaster.core.keys import CLOSE, DATA
from broadcaster.dashboard.wrapping import _framed, _shared, opening, run_events
from broadcaster.durable.live import entries_of
from broadcaster.durable.storage import Entry, State, _entries
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.pubsub import PubSubProtocol
from broadcaster.fanout.push import SingleResolver
from broadcaster.fanout.repair import Repairer
from broadcaster.fanout.subscription import Run, Subscription, Topic, ds_frames_ok, page_run
from broadcaster.http.metrics import FrontendMetrics

pytestmark = pytest.mark.anyio

ERROR_2 = b'{"type":"error","errorText":"stored event 2 of this stream is malformed"}'


def make_hub() -> Hub:
    redis = Redis()  # never connected: only what a message and a read do is exercised
    return Hub(SingleResolver(redis), EventLog(redis), metrics=FrontendMetrics())


def watch(hub: Hub, stream_id: str, topic: Topic | None = None) -> Topic:
    topic = topic or Topic(stream_id, stream_id.encode(), 0, "")
    hub._topics[stream_id] = topic
    hub._by_channel[topic.channel] = topic
    topic.watched = True
    return topic


class Socket:
    """A viewer's socket: what the fan-out wrote to it; ``fail`` raises instead."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.got: list[bytes] = []

    def write(self, data: bytes) -> bool:
        if self.fail:
            raise RuntimeError("the socket went away in a way nobody expected")
        self.got.append(data)
        return True


def viewer(topic: Topic, socket: Socket) -> Subscription:
    sub = Subscription(16, topic)
    sub.park(socket.write, 0.0)
    topic.subs.add(sub)
    return sub


def run_of(first: int, last: int, *, types: dict[int, str] | None = None) -> Run:
    events = [
        Event(seq, (types or {}).get(seq, "data-n"), b'{"i":%d}' % seq, f"{seq:08x}")
        for seq in range(first, last + 1)
    ]
    return first, last, b"".join(sse.encode(e) for e in events), False


def message(run: Run) -> bytes:
    return b"%d %d %08x -\n%s" % (run[0], run[1], run[1], run[2])


def count(hub: Hub, reason: str) -> float:
    assert isinstance(hub.metrics, FrontendMetrics)
    name = "broadcaster_delivery_errors_total"
    return hub.metrics.registry.get_sample_value(name, {"reason": reason}) or 0.0


async def test_a_viewer_whose_delivery_raises_is_cut_and_the_others_get_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = make_hub()
    topic = watch(hub, "s")
    sockets = [Socket(fail=i in (2, 5)) for i in range(8)]
    subs = [viewer(topic, s) for s in sockets]
    run = run_of(1, 1)
    with caplog.at_level(logging.ERROR, "broadcaster.hub"):
        hub._fan_out(topic, run)
        hub._fan_out(topic, run_of(2, 2))
    for sub, socket in zip(subs, sockets, strict=True):
        if socket.fail:
            assert sub.closed and not socket.got, "cut: it resumes from its Last-Event-ID"
        else:
            assert socket.got == [run[2], run_of(2, 2)[2]] and not sub.closed
    assert count(hub, "viewer") == 2
    lines = [r for r in caplog.records if "viewer's delivery raised" in r.getMessage()]
    assert len(lines) == 1, "logged once for the stream, not once per viewer"
    assert "stream s" in lines[0].getMessage() and lines[0].exc_info


class Raising(Subscription):
    """A viewer whose delivery itself raises, as a parser of a malformed run did."""

    def deliver(self, run: Run) -> None:
        raise ValueError("subsection not found")


class Forgetful(Topic):
    """A topic whose shared work for a run raises (outside any one viewer's delivery)."""

    __slots__ = ()

    def remember(self, run: Run) -> None:
        raise ValueError("subsection not found")


async def test_one_streams_run_that_raises_costs_no_other_stream_its_run() -> None:
    hub = make_hub()
    bad = watch(hub, "bad")
    raising = Raising(16, bad)
    bad.subs.add(raising)
    broken = watch(hub, "broken", Forgetful("broken", b"broken", 0, ""))
    good = watch(hub, "good")
    socket = Socket()
    viewer(good, socket)
    for topic in (bad, broken, good):
        hub._on_message(topic.channel, message(run_of(1, 2)))
    hub._on_read()
    assert socket.got == [run_of(1, 2)[2]]
    assert raising.closed and count(hub, "viewer") == 1
    assert count(hub, "message") == 1 and not broken.settled, "it vouches for nothing now"
    assert broken in hub.repairer._queued_checks, "the log is asked where it stands"


async def test_a_message_whose_frames_no_append_made_is_read_from_the_log() -> None:
    hub = make_hub()
    topic = watch(hub, "s")
    socket = Socket()
    viewer(topic, socket)
    split = run_of(1, 1, types={1: "x\n"})  # a type with a line break splits its frame
    no_data = (1, 1, b"id: 1.00000001\nevent: data-n\n\n", False)
    carriage = run_of(1, 1, types={1: "x\r"})
    for run in (split, no_data, carriage):
        topic.repairing = False
        hub._on_message(b"s", message(run))
        hub._on_read()
        assert topic.repairing and topic.cursor == 0, "a fill reads the log instead"
    assert not socket.got and count(hub, "message") == 3
    topic.repairing = False
    hub._on_message(b"s", message(run_of(1, 3)))
    hub._on_read()
    assert socket.got == [run_of(1, 3)[2]] and topic.cursor == 3


def test_durable_streams_frames_are_checked_against_what_the_message_announces() -> None:
    entries = b"0badc0de 2\n{}0badc0de 0\n"
    assert ds_frames_ok(b"h\n" + entries, 2, 2)
    assert not ds_frames_ok(b"h\n" + entries, 2, 3), "fewer entries than announced"
    assert not ds_frames_ok(b"h\n0badc0de 99\n{}", 2, 1), "a size past the end"
    assert not ds_frames_ok(b"h\n0badc0de 2x\n{}", 2, 1), "a size that is no number"
    assert not ds_frames_ok(b"h\n0badc0de2\n{}", 2, 1), "no space"
    assert not ds_frames_ok(b"h\n0badc0de 2", 2, 1), "no line"


def resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def test_a_reply_whose_handling_raises_costs_the_connection_nothing() -> None:
    got: list[tuple[bytes, bytes]] = []
    errors: list[tuple[bytes | None, Exception]] = []
    reads: list[int] = []

    def on_message(channel: bytes, payload: bytes) -> None:
        if channel == b"bad":
            raise ValueError("subsection not found")
        got.append((channel, payload))

    proto = PubSubProtocol(
        on_message,
        lambda: reads.append(1),
        lambda channel: None,
        lambda exc: None,
        lambda channel, exc: errors.append((channel, exc)),
    )
    data = b"".join(
        resp(b"message", channel, b"p%d" % i) for i, channel in enumerate([b"a", b"bad", b"c"])
    )
    proto.data_received(data)
    proto.data_received(resp(b"message", b"bad", b"again") + resp(b"smessage", b"d", b"p"))
    assert got == [(b"a", b"p0"), (b"c", b"p2"), (b"d", b"p")]
    assert [(c, type(e)) for c, e in errors] == [(b"bad", ValueError)] * 2
    assert reads == [1, 1] and not proto.closed


def test_malformed_stored_entries_are_read_as_an_error_that_ends_the_read() -> None:
    before = contain.MALFORMED["events"]
    good = (b"1-0", {b"t": b"data-n", b"d": b'{"i":1}', b"h": b"0000000a"})
    after = (b"3-0", {b"t": b"data-n", b"d": b'{"i":3}', b"h": b"0000000c"})
    flaws: list[dict[bytes, bytes]] = [
        {b"t": b"x\n", b"d": b"{}", b"h": b"0000000b"},  # a type that splits the frame
        {b"t": b"data-n", b"h": b"0000000b"},  # no data
        {b"d": b"{}", b"h": b"0000000b"},  # no type
        {b"t": b"data-n", b"d": b"{}\r{}", b"h": b"0000000b"},  # data of two lines
        {b"t": b"\xff", b"d": b"{}", b"h": b"0000000b"},  # a type that is no UTF-8
        {b"t": b"data-n", b"d": b"{}", b"h": b"0000000b\n"},  # a tag that splits the id
    ]
    for fields in flaws:
        events = entries_to_events([good, (b"2-0", fields), after], "s")
        tag = "" if fields.get(b"h") == b"0000000b\n" else "0000000b"
        assert events == [Event(1, "data-n", b'{"i":1}', "0000000a"), malformed(2, tag)]
        assert events[-1].data == ERROR_2 and events[-1].terminal
    assert entries_to_events([(b"2-1", {b"t": b"a", b"d": b"{}"})])[0].type == "error"
    assert contain.MALFORMED["events"] == before + len(flaws) + 1
    assert entries_to_events([good, after]) == [
        Event(1, "data-n", b'{"i":1}', "0000000a"),
        Event(3, "data-n", b'{"i":3}', "0000000c"),
    ]


def test_a_page_that_ends_malformed_is_a_run_that_ends() -> None:
    page = [Event(1, "data-n", b"{}", "0000000a"), malformed(2, "0000000b")]
    first, last, frames, ends = page_run("sse", page)
    assert (first, last, ends) == (1, 2, True)
    assert frames.endswith(b"id: 2.0000000b\nevent: error\ndata: " + ERROR_2 + b"\n\n" + sse.DONE)
    ds = page_run("ds", page)
    assert ds[3] and entries_of("ds", ds)[-2:] == [
        Entry(2, DATA, ERROR_2, "0000000b"),
        Entry(3, CLOSE, b"", "0000000b"),
    ]


def test_runs_that_cannot_be_read_end_in_an_error() -> None:
    good = run_of(1, 1)[2]
    no_data = b"id: 2.0000000b\nevent: data-n\n\n"
    run = (1, 2, good + no_data, False)
    assert entries_of("sse", run)[1:] == [Entry(2, DATA, ERROR_2, ""), Entry(2, CLOSE, b"", "")]
    ds_run = (1, 2, b"0000000a 2\n{}0000000b 9x\n{}", False)
    assert entries_of("ds", ds_run)[1:] == [Entry(2, DATA, ERROR_2, ""), Entry(2, CLOSE, b"", "")]
    assert run_events(run)[1:] == [malformed(2)]
    framed = _framed(opening("s"), run)
    assert framed[1][0] == b"2" and b'"event":' + ERROR_2 in framed[1][1]
    alone = _shared(opening("s"), (2, 2, no_data, False))
    assert alone[1] is None and alone[0] is not None and alone[0][0][0] == b"2"


def ds_state(kind: str, content_type: str = "application/json") -> State:
    return State(kind, content_type, 3, "", 3, "", False, False, False, None, None, "")


def test_durable_reads_end_at_a_malformed_entry() -> None:
    def raw(*entries: tuple[int, str, bytes, str]) -> list[Any]:
        return [x for e in entries for x in (str(e[0]).encode(), e[1].encode(), e[2], e[3])]

    ok = (1, "data-n", b'{"i":1}', "0000000a")
    events = ds_state("feed")
    for bad in [(2, "x\n", b"{}", "0000000b"), (2, "data-n", b"{\n}", "0000000b")]:
        assert _entries("s", events, raw(ok, bad, (3, "a", b"{}", "0000000c"))) == [
            Entry(*ok),
            Entry(2, DATA, ERROR_2, "0000000b"),
            Entry(2, CLOSE, b"", "0000000b"),
        ]
    binary = ds_state("ds", "application/octet-stream")
    lines = (1, DATA, b"a\nb", "0000000a")
    assert _entries("s", binary, raw(lines)) == [Entry(*lines)], "bytes are bytes"
    assert _entries("s", binary, raw((1, "", b"x", "")))[0].data.startswith(b'{"type":"error"')


def test_a_throttle_logs_a_key_once_per_period_and_counts_the_rest() -> None:
    throttle = contain.Throttle(every=3600, most=2)
    assert throttle.due("a") == 0
    assert throttle.due("a") is None and throttle.due("a") is None
    assert throttle.due("b") == 0 and throttle.due("c") == 0  # "a" is forgotten
    assert throttle.due("a") == 0
    throttle.every = 0
    throttle.due("b")
    assert throttle.due("b") == 0


class FlakyLog:
    """Reads of one stream raise what no Redis error is; the others' read fine."""

    async def read_after(self, stream_id: str, after: int) -> AsyncIterator[list[Event]]:
        if stream_id == "bad":
            raise TypeError("a bug")
        yield [Event(after + 1, "data-n", b"{}", "0000000a")]


async def test_the_repairer_goes_on_after_a_fill_that_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(contain, "BACKOFF", 0.01)
    got: list[tuple[str, Run]] = []
    flaky: Any = FlakyLog()
    before = contain.LOOP_ERRORS["repair-fill"]
    async with Repairer(flaky, lambda topic, run: got.append((topic.stream_id, run))) as repairer:
        bad = Topic("bad", b"bad", 0, "")
        bad.watched = True
        sub = Subscription(16, bad)
        bad.subs.add(sub)
        for _ in range(5):  # more than its workers (4)
            bad.repairing = False
            repairer.fill(bad, 1)
            await asyncio.sleep(0.01)
        good = Topic("good", b"good", 0, "")
        good.watched = True
        repairer.fill(good, 1)
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
    assert [sid for sid, _ in got] == ["good"] and good.cursor == 1
    assert sub.closed, "the failed stream's viewers resume from the log themselves"
    assert contain.LOOP_ERRORS["repair-fill"] >= before + 1


async def test_the_keepalive_goes_on_after_a_ping_that_raised() -> None:
    keepalive = Keepalive(0.16)  # ticks every 10 ms
    topic = Topic("s", b"s", 0, "")
    good, bad = Socket(), Socket(fail=True)
    now = asyncio.get_running_loop().time()
    subs = [Subscription(16, topic, keepalive), Subscription(16, topic, keepalive)]
    subs[0].park(bad.write, now - 1)
    subs[1].park(good.write, now - 1)
    task = asyncio.create_task(keepalive.run())
    try:
        for _ in range(100):
            if good.got:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert good.got and good.got[0] == sse.PING


async def test_a_loop_that_went_on_past_its_cancel_is_cancelled_again() -> None:
    """A loop whose await let its cancel go (as Python 3.11's ``asyncio.wait_for`` does
    when the call it waits for finishes as the cancel comes) and that then goes on: the
    stop cancels it again; a loop that ends at once is not held up."""
    went_on = asyncio.Event()

    async def lets_one_cancel_go() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            went_on.set()
        await asyncio.Event().wait()  # goes on: only another cancel ends it

    async def plain() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(lets_one_cancel_go()), asyncio.create_task(plain())]
    await asyncio.sleep(0)
    stopping = asyncio.create_task(contain.cancel_until_ended(tasks))
    try:
        done, _ = await asyncio.wait([stopping], timeout=10)
        assert stopping in done, "the stop waits for a loop that went on past its cancel"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait([stopping])
    assert went_on.is_set() and all(t.cancelled() for t in tasks)


async def test_what_a_stopped_loop_raised_is_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("in its cleanup") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="in its cleanup"):
        await contain.cancel_until_ended([task])


async def test_a_stop_that_goes_on_logs_what_a_loop_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("in its cleanup") from None

    async def plain() -> None:
        await asyncio.sleep(3600)

    tasks = [
        asyncio.create_task(fails_on_cancel(), name="failing-loop"),
        asyncio.create_task(plain(), name="plain-loop"),
    ]
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="broadcaster.log"):
        await contain.cancel_until_ended(tasks, raising=False)
    assert all(t.done() for t in tasks) and tasks[1].cancelled()
    failed = [r for r in caplog.records if "failing-loop ended with an error" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None, caplog.text
    assert "plain-loop" not in caplog.text
