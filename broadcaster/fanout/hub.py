"""The fan-out of a front-end process: the streams it watches, their viewers, and the copy
of each new event to every viewer. Knows nothing of HTTP.

New events are pushed: the append script publishes each batch as SSE frames on its
stream's channel, and this process subscribes to those of the streams it has viewers
for (``push.py``, ``pubsub.py``). A message that follows the topic's cursor goes to each
caught-up viewer's socket in one write, or into the bounded buffer of one behind, so an
event's cost does not depend on how many streams are watched; the log is read only to
fill a gap, once per stream (``repair.py``). A topic is subscribed before its first
viewer reads the history, so no event falls between. One viewer: ``viewer.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator

from broadcaster.core import contain, keys, sse, tracing
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.core.sse import Writer
from broadcaster.fanout import viewer
from broadcaster.fanout.arrivals import Arrivals
from broadcaster.fanout.config import Admission, HubConfig, LoopLag
from broadcaster.fanout.faults import Faults
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.push import PushSubscriber, Resolver
from broadcaster.fanout.repair import SETTLE_WAIT, Repairer
from broadcaster.fanout.replay import FanoutMetrics, Replays
from broadcaster.fanout.subscription import (
    NO_ENCODINGS,
    NOT_SHARED,
    Form,
    Run,
    Subscription,
    Topic,
    ds_frames_ok,
)
from broadcaster.presence.tracker import Presence

log = logging.getLogger("broadcaster.hub")

PRESENCE_EVERY = 1.0
"""Seconds between two ``data-viewers`` notices of one stream: changes in between are
coalesced into the latest count."""


def _running_time() -> float:
    """The running loop's time (``Hub._now`` before the hub runs)."""
    return asyncio.get_running_loop().time()


class Hub:
    """The watched streams and their viewers. Use ``async with Hub(...)`` from the app's
    lifespan: it runs the subscriber, the repairer and the keepalive and check tasks, and
    awaits them on exit."""

    def __init__(
        self,
        resolver: Resolver,
        log_: EventLog,
        config: HubConfig | None = None,
        metrics: FanoutMetrics | None = None,
        presence: Presence | None = None,
    ) -> None:
        """``resolver`` says where the channels live (``push.resolver_for``); ``presence``
        counts the viewers (none: nobody counts them)."""
        self.log = log_
        self.presence = presence
        self.config = config or HubConfig()
        self.metrics = metrics
        self.push = PushSubscriber(
            resolver,
            self._on_message,
            self._on_read,
            self._recovered,
            probe_seconds=self.config.probe,
            on_error=self.message_failed,
        )
        self.repairer = Repairer(log_, self._fan_out)
        self.faults = Faults(self.repairer, metrics)
        timed = metrics.redis_read if metrics is not None else None
        self.arrivals = Arrivals(self.repairer, log_, self._watch_waited, timed)
        self.replays = Replays(log_, metrics)
        self.keepalive = Keepalive(self.config.keepalive)
        self._topics: dict[str, Topic] = {}
        self._by_channel: dict[bytes, Topic] = {}
        self._pending: list[Topic] = []  # topics with runs of the current read, in order
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self._viewers = 0  # kept by subscribe: each viewer of each stream
        self.connections = 0
        """Responses holding subscriptions (the connection limit's): read on every
        connect, so an attribute, not a property (kept by ``_enter``, ``leave`` and
        ``connection``)."""
        self.left = 0
        """Viewers that have left since start (the gc freezer thaws by it)."""
        self.admission = Admission(self.config.admit_per_second, self.config.admit_wait)
        paced = self.config.admit_lag > 0 and self.config.admit_per_second > 0
        self.lag = LoopLag(self.config.admit_lag) if paced else None
        """Whether the loop keeps up, while the hub runs: new viewers are admitted at once
        then (``admit``). None: every viewer takes its turn at the rate (if any)."""
        self._creators: set[Callable[[str | None], None]] = set()
        """Who wants to hear of new streams (a connection following prefixes): called
        with each new stream's id, or None when announcements may have been missed."""
        self._created: dict[bytes, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._now: Callable[[], float] = _running_time
        """The loop's time: once the hub runs, the ``time`` of the loop kept at start
        itself (3.11 asks ``getpid`` for the running loop), called twice a connect."""

    async def __aenter__(self) -> Hub:
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time
        await self.push.__aenter__()
        await self.repairer.__aenter__()
        self._tasks = [
            asyncio.create_task(self.keepalive.run(), name="hub-keepalive"),
            asyncio.create_task(self._quiet_check_loop(), name="hub-quiet-check"),
            asyncio.create_task(self.arrivals.run(), name="hub-arrivals"),
        ]
        if self.lag is not None:
            self.lag.start(self._loop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drain()
        if self.lag is not None:
            self.lag.stop()
        self.arrivals.stop()
        for topic in self._topics.values():
            for handle in (topic.linger, topic.told):
                if handle is not None:
                    handle.cancel()
        await contain.cancel_until_ended(self._tasks, raising=False)
        await self.repairer.__aexit__(*exc)
        await self.push.__aexit__(*exc)

    @contextlib.asynccontextmanager
    async def new_streams(self, on_new: Callable[[str | None], None]) -> AsyncIterator[None]:
        """Hear of every stream created from now on (``on_new(stream id)``; None after an
        interruption: list again), once the 256 groups' announcement channels are
        subscribed. They are subscribed while anyone listens: one message per stream
        created, nothing per event."""
        if not self._created:
            for name in keys.created_channels(self.log.db):
                channel = name.encode()
                self._created[channel] = self.push.subscribe(channel)
        self._creators.add(on_new)
        try:
            await asyncio.shield(asyncio.gather(*self._created.values()))
            yield
        finally:
            self._creators.discard(on_new)
            if not self._creators:
                for channel in self._created:
                    self.push.unsubscribe(channel)
                self._created.clear()

    def drain(self) -> None:
        """End every open response cleanly (shutdown): viewers reconnect elsewhere."""
        self.closing = True
        for topic in self._topics.values():
            for sub in topic.subs:
                sub.drain(self.config.farewell())
            if topic.ready is not None and not topic.ready.done():
                topic.ready.cancel()  # its viewers wait no longer for Redis

    def admit(self) -> float | None:
        """When a new viewer may start: in so many seconds, or None: refused. At once
        while the loop keeps up (``lag``), else at the rate."""
        now = self._now()
        lag = self.lag
        wait = self.admission.take(now, lag is None or lag.behind(now))
        if wait and self.metrics is not None:
            self.metrics.waited_turn.inc()
        return wait

    @property
    def viewers(self) -> int:  # subscriptions: a connection following 50 streams is 50
        return self._viewers

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """A response that holds several subscriptions (each made with ``own=False``)."""
        self.connections += 1
        try:
            yield
        finally:
            self.connections -= 1

    @property
    def streams(self) -> int:
        """Streams with viewers here (not those lingering after their last left)."""
        return sum(1 for t in self._topics.values() if t.subs)

    def viewers_of(self, stream_id: str) -> int:
        topic = self._topics.get(stream_id)
        return len(topic.subs) if topic else 0

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        stream_id: str,
        known_seq: int,
        known_tag: str = "",
        *,
        form: Form = "sse",
        make: Callable[[int, Topic, Keepalive], Subscription] = Subscription,
        counted: bool = True,
        subject: str | None = None,
        wants_presence: bool = False,
        own: bool = True,
    ) -> AsyncIterator[Subscription]:
        """Receive live runs of ``stream_id`` once its channel's subscription is confirmed (so
        nothing published is missed). ``known_seq``/``known_tag``: a new topic's cursor;
        ``form`` and ``make``: what messages carry and the subscription built. ``counted``
        viewers count among the stream's (as ``subject``; ``wants_presence`` is told the count);
        an ``own`` subscription counts as a connection."""
        topic = self._topics.get(stream_id)
        if topic is None:
            topic = self._watch(stream_id, known_seq, known_tag, form)
        sub = make(self.config.viewer_buffer, topic, self.keepalive)
        sub.presence, sub.own = wants_presence, own
        self._enter(topic, sub, counted, subject)
        try:
            assert topic.ready is not None
            try:
                await asyncio.shield(topic.ready)
            except asyncio.CancelledError:
                if not sub.closed:
                    raise  # this viewer left; otherwise the hub drained: sub is closed
            yield sub
        finally:
            if not sub.handed:  # else whoever it was handed to leaves (``leave``)
                self.leave(sub)

    def _enter(self, topic: Topic, sub: Subscription, counted: bool, subject: str | None) -> None:
        """``sub`` is one of ``topic``'s viewers from now on (``subscribe``, ``join``)."""
        if topic.linger is not None:
            topic.linger.cancel()
            topic.linger = None
        if self.closing:
            sub.drain(self.config.farewell())
        topic.subs.add(sub)
        self._viewers += 1
        self.connections += sub.own
        if counted and self.presence is not None:
            sub.counted, sub.subject = True, subject
            self.presence.join(topic.stream_id, subject)

    def join(
        self,
        stream_id: str,
        after: int,
        tag: str | None,
        writer: Writer,
        *,
        subject: str | None = None,
        wants_presence: bool = False,
        vouched: bool = False,
    ) -> tuple[Subscription, bytes] | None:
        """A viewer joins caught up with no task: its subscription, parked on ``writer``
        and handed over, and what the topic holds after ``after``, to write before the
        loop runs again; None unless ``known`` vouches for the resume point (``vouched``:
        the caller has just seen it vouch, and nothing ran since)."""
        topic = self._topics.get(stream_id)
        if topic is None or self.closing or not (vouched or topic.vouches(after, tag)):
            return None
        held = topic.since(after)
        if held is None:
            return None
        sub = Subscription(self.config.viewer_buffer, topic, self.keepalive)
        sub.presence = wants_presence
        self._enter(topic, sub, True, subject)
        sub.last = after
        if held:
            if held[0][0] <= after:  # else the run is the viewer's whole
                held[0] = viewer.trim(held[0], after)
            sub.last = held[-1][1]
        sub.park(writer, self._now())
        sub.handed = True
        if len(held) == 1:  # mostly: a herd's viewers each get one run
            return sub, held[0][2]
        return sub, b"".join([run[2] for run in held])

    def leave(self, sub: Subscription) -> None:
        """``sub``'s viewer is gone: it stops counting, and its stream is unwatched once
        nobody watches it (after ``linger``). Once per subscription; a viewer that was
        handed over (``viewer.deliver``'s ``detach``) is left by whoever holds it."""
        topic = sub.topic
        if sub.gone or topic is None:
            return
        sub.gone = True
        sub.handed = False
        sub.armed = False
        sub.direct = None
        self._viewers -= 1
        self.connections -= sub.own
        self.left += 1
        topic.subs.discard(sub)
        if sub.counted and self.presence is not None:
            self.presence.leave(topic.stream_id, sub.subject)
        if not topic.subs and topic.watched:
            if self.config.linger > 0 and not self.closing:
                loop = asyncio.get_running_loop()
                topic.linger = loop.call_later(self.config.linger, self._unwatch, topic)
            else:
                self._unwatch(topic)

    def warm(self, stream_id: str) -> bool:
        """Whether ``stream_id`` is watched here with its subscription confirmed: a reader
        that joins it misses nothing published from now on without reading the log."""
        topic = self._topics.get(stream_id)
        return topic is not None and topic.ready is not None and topic.ready.done()

    def known(self, stream_id: str, seq: int, tag: str | None) -> StreamInfo | None:
        """Where an SSE stream watched here stands, when its topic vouches for the resume
        point ``seq`` (history tag ``tag``; None: the start) without asking the log
        (``Topic.vouches``), as it mostly does for the viewers of a front-end that went
        away. (The kind is not known here: only a Durable Stream's matters, and none is
        watched as SSE frames.)"""
        topic = self._topics.get(stream_id)
        if topic is None or not topic.vouches(seq, tag):
            return None
        return StreamInfo("", topic.cursor, None, tag, topic.tag)

    def vouches(self, stream_id: str, seq: int, tag: str | None) -> bool:
        """Whether ``known`` would say where the stream stands (the topic here vouches for
        the resume point), without saying it."""
        topic = self._topics.get(stream_id)
        return topic is not None and topic.vouches(seq, tag)

    def when_settled(self, stream_id: str, then: Callable[[], None]) -> bool:
        """``then()`` once the topic of ``stream_id`` may vouch for more, made if need be
        from its state, read with other streams' (``arrivals``); False: nothing would help."""
        return self.arrivals.wait(stream_id, self._topics.get(stream_id), then)

    def _watch_waited(self, stream_id: str, info: StreamInfo) -> bool:
        """A topic made for viewers waiting for it (``Arrivals``): unwatched unless one
        comes within ``SETTLE_WAIT`` (or ``linger``)."""
        if self.closing or stream_id in self._topics:
            return False
        topic = self._watch(stream_id, info.last_seq, info.tag, "sse")  # no viewer yet
        wait = max(self.config.linger, SETTLE_WAIT)
        topic.linger = asyncio.get_running_loop().call_later(wait, self._unwatch, topic)
        return True

    def _watch(self, stream_id: str, cursor: int, tag: str, form: Form) -> Topic:
        topic = Topic(stream_id, self.log.channel(stream_id), cursor, tag, form)
        topic.read_at = topic.checked_at = self._now()
        self._topics[stream_id] = topic
        self._by_channel[topic.channel] = topic
        topic.watched = True
        topic.ready = self.push.subscribe(topic.channel)
        topic.ready.add_done_callback(lambda ready: self._confirmed(topic, ready))
        self.arrivals.watched(topic)
        return topic

    def _confirmed(self, topic: Topic, ready: asyncio.Future[None]) -> None:
        """Redis confirmed ``topic``'s subscription: the log is asked once where the stream
        stands (batched with other streams'), and a topic whose cursor is that is settled
        at once (``Repairer.check``): one command per stream, not two reads per viewer."""
        if ready.cancelled() or ready.exception() is not None or not topic.watched:
            return
        if topic.form == "sse" and not topic.settled:
            self.repairer.check([topic])

    def _unwatch(self, topic: Topic) -> None:
        """Stop watching ``topic`` if nobody watches it any more (or it was deleted)."""
        if topic.linger is not None:
            topic.linger.cancel()
            topic.linger = None
        if topic.subs or not topic.watched:
            return
        if topic.told is not None:
            topic.told.cancel()
            topic.told = None
        del self._topics[topic.stream_id]
        del self._by_channel[topic.channel]
        topic.watched = False
        self.push.unsubscribe(topic.channel)

    async def follow(
        self,
        stream_id: str,
        after: int,
        info: StreamInfo,
        writer: Writer | None = None,
        *,
        subject: str | None = None,
        wants_presence: bool = False,
        compact: bool = False,
        detach: viewer.Detach | None = None,
        marks: bool = False,
    ) -> AsyncIterator[bytes]:
        """SSE bytes for one viewer: every event with seq > ``after`` once, in order, ``: ping``
        in silences, until the terminal event or a drain. With a ``writer``, live frames for a
        caught-up viewer go straight to the socket; with ``detach`` too, the viewer may be handed
        over and the iteration ends with the subscription open (``viewer.deliver``)."""
        if info.ended:
            async for chunk in self.replays.ended(stream_id, after, compact=compact):
                yield chunk
            return
        async with self.subscribe(
            stream_id, info.last_seq, info.tag, subject=subject, wants_presence=wants_presence
        ) as sub:
            sub.last, sub.marks = after, marks  # marks: Subscription.marks
            topic = sub.topic
            # What the topic holds after the resume point, instead of reading the log
            # (a compact replay of more than nothing is the log's to fold); nothing if
            # unsettled at or before it: its first check fills in what came meanwhile.
            held = None
            if topic is not None and (topic.settled or topic.cursor <= after):
                held = topic.since(after) if topic.settled else []
            if held and compact:
                held = None
            frames = viewer.deliver(
                sub,
                self.replays,
                stream_id,
                writer,
                self.config.keepalive,
                compact=compact,
                held=held,
                detach=detach,
            )
            async for chunk in frames:
                yield chunk

    async def resume(
        self, sub: Subscription, writer: Writer, detach: viewer.Detach | None
    ) -> AsyncIterator[bytes]:
        """``follow`` again for a viewer that was handed over and woke (its subscription
        is taken back from its holder): what it was not sent, and so on as ``follow``."""
        sub.handed = False
        topic = sub.topic
        assert topic is not None
        try:
            frames = viewer.deliver(
                sub,
                self.replays,
                topic.stream_id,
                writer,
                self.config.keepalive,
                held=[],
                detach=detach,
            )
            async for chunk in frames:
                yield chunk
        finally:
            if not sub.handed:
                self.leave(sub)

    # --- new events ---

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        """A message of a stream's channel: ``<first> <last> <tag> <T|-> [<ms>]\\n<frames>``
        (no frames when the batch was too large to publish whole; ms: the append's time)."""
        topic = self._by_channel.get(channel)
        if topic is None:
            if channel in self._created:
                self._announce(payload.decode(errors="replace"))
            return  # else nobody watches it any more
        nl = payload.find(b"\n")
        try:
            first_b, last_b, tag, flag, *at = payload[:nl].split(b" ")  # at: append ms
            first, last = int(first_b), int(last_b)
        except ValueError:
            log.warning("a message on %r that no append published; ignored", channel)
            return
        if flag == b"X":
            self._deleted(topic)
            return
        if flag == b"P":
            self._viewers_changed(topic, int(payload[nl + 1 :] or b"0"))
            return
        if last <= topic.cursor:
            return
        if topic.repairing or first != topic.cursor + 1 or nl == len(payload) - 1:
            self.repairer.fill(topic, last)
            return
        # Frames as the append script makes them, or the log is read instead: its SSE
        # frames have four lines each (two more for [DONE]) and no CR, whatever an event
        # held, so one count over the bytes tells a frame split by a line break in an
        # event's type or data (stored by another program) from the rest.
        if not (
            payload.count(b"\n", nl + 1) == 4 * (last - first + 1) + (2 if flag == b"T" else 0)
            and b"\r" not in payload
            if topic.form == "sse"
            else ds_frames_ok(payload, nl + 1, last - first + 1)
        ):
            self.faults.unreadable(topic, first, last)
            return
        topic.cursor, topic.tag = last, tag.decode()
        if not topic.pending:
            self._pending.append(topic)
            topic.appended_at = at[0] if at else b""  # the run's oldest append
        topic.pending.append((first, last, payload[nl + 1 :], flag == b"T"))

    def _on_read(self) -> None:
        """The messages of one read of a pub/sub socket are in: each topic's go to its
        viewers as one run, so a viewer gets one write per read, not one per message (at
        1,000 events/s on one stream, a busy front-end reads dozens at a time)."""
        pending, self._pending = self._pending, []
        for topic in pending:
            runs, topic.pending = topic.pending, []
            if not topic.watched:
                continue
            try:  # free until something raises: then only this stream's run is lost
                if len(runs) == 1:
                    self._fan_out(topic, runs[0])
                else:
                    frames = b"".join(r[2] for r in runs)
                    self._fan_out(topic, (runs[0][0], runs[-1][1], frames, runs[-1][3]))
                if self.metrics is not None and topic.appended_at:
                    self.metrics.appended_at(topic.appended_at)  # once per run, not per viewer
                topic.appended_at = b""  # a later repair's run is not timed by this one
            except Exception as exc:
                self.message_failed(topic.channel, exc)

    def _fan_out(self, topic: Topic, run: Run) -> None:
        topic.read_at = self._now()
        if not topic.settled:
            topic.settled = True
            self.repairer.settled(topic)
        topic.remember(run)
        if run[3]:
            topic.ended = True
        sub: Subscription | None = None
        try:  # costs nothing until a delivery raises (``Faults.delivery_failed``)
            for sub in topic.subs:
                sub.deliver(run)
        except Exception as exc:
            self.faults.delivery_failed(topic, run, sub, exc)
        if tracing.traces.on and not topic.written and topic.subs:  # traced only: once a stream
            topic.written = True
            tracing.first_write(self.log.redis, topic.stream_id, run, topic.appended_at)
        # The run's shared encodings go now, while still in the cache (a viewer that
        # writes it later, from its buffer, encodes it again): at the next run they were
        # cold, and freeing them there was a visible share of a dashboard's fan-out.
        topic.encoded, topic.shared = NO_ENCODINGS, NOT_SHARED
        if self.metrics is not None:
            self.metrics.delivered.inc(len(topic.subs) * (run[1] - run[0] + 1))

    # --- what raised: faults.py ---

    def message_failed(self, channel: bytes | None, exc: Exception) -> None:
        """Handling a pub/sub message (of ``channel``; None: the end of a read) raised."""
        topic = self._by_channel.get(channel) if channel is not None else None
        self.faults.message_failed(topic, channel, exc)

    def _announce(self, stream_id: str | None) -> None:
        """A stream was created (None: some may have been, unheard): to every connection
        following prefixes, each on its own."""
        for on_new in list(self._creators):
            try:
                on_new(stream_id)
            except Exception as exc:
                self.message_failed(None, exc)

    def _viewers_changed(self, topic: Topic, count: int) -> None:
        """The stream's viewer count changed: tell the viewers that asked, at most once a
        second (the latest count wins)."""
        topic.viewers = count
        if topic.told is not None:
            return  # a notice is due already; it will carry this count
        loop = asyncio.get_running_loop()
        wait = topic.told_at + PRESENCE_EVERY - loop.time()
        topic.told = loop.call_later(max(0.0, wait), self._tell, topic)

    def _tell(self, topic: Topic) -> None:
        topic.told = None
        if topic.viewers == topic.told_count or not topic.watched:
            return
        topic.told_at = self._now()
        topic.told_count = topic.viewers
        frame = sse.viewers_frame(topic.viewers)
        for sub in list(topic.subs):
            if sub.presence:
                try:
                    sub.tell(frame)
                except Exception as exc:
                    self.faults.cut(topic, sub, exc)

    def _deleted(self, topic: Topic) -> None:
        """The stream was deleted: its responses end (readers learn 404 or 410 when back)."""
        for sub in list(topic.subs):
            sub.close()
        topic.subs.clear()
        self._unwatch(topic)

    def _recovered(self, channels: list[bytes]) -> None:
        """Subscribed again after an interruption: ask the log what was missed."""
        if any(c in self._created for c in channels):
            self._announce(None)  # announcements may be lost: list the prefixes again
        topics = [t for c in channels if (t := self._by_channel.get(c)) is not None]
        for topic in topics:
            topic.settled = False  # messages were missed: the cursor is the log's to confirm
            topic.forget()
        self.repairer.recover(topics)

    # --- background ---

    async def _quiet_check_loop(self) -> None:
        """Now and then, the log is asked about every stream quiet for ``quiet_check``."""
        loop = asyncio.get_running_loop()
        every = self.config.quiet_check
        while True:
            await asyncio.sleep(every / 8)
            try:
                due = loop.time() - every
                quiet = [
                    t for t in self._topics.values() if t.read_at <= due and t.checked_at <= due
                ]
                if quiet:
                    self.repairer.check(quiet)
            except Exception:
                contain.loop_failed("hub-quiet-check", log)
