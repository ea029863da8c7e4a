"""The AG-UI view of a generation, served from the AI SDK frames the fan-out delivers.

A stream's ``Translation`` maps its chunks once per front-end, in seq order, when an
AG-UI viewer first needs them, and keeps the encoded frames for every other (a run of
text deltas mapped as bytes in one replace). A viewer ahead of it makes it catch up from
the log; one behind what it keeps folds a private one and rejoins later. Bounded by
``KEEP_EVENTS`` per stream and ``KEEP_STREAMS`` per front-end. ``view`` is one
response's body: the prelude, the frames, and a run's end where it waits for a person.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from broadcaster.agui import frames
from broadcaster.agui.history import Transcript
from broadcaster.agui.projection import Mapper, Open, interrupted
from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog

_DECODE = json.JSONDecoder().decode

Writer = Callable[[bytes], bool]
"""Writes SSE bytes to one viewer's socket; False, having written nothing, when it cannot."""

KEEP_EVENTS = 1024
"""Encoded events a stream's translation keeps (the most recent)."""

KEEP_STREAMS = 256
"""Translations a front-end keeps (the most recently used)."""


@dataclass(slots=True)
class Mapped:
    """One chunk's AG-UI frames, the state after them, and the approval it asks for; or a
    run of text deltas' (``first`` to ``last``), kept whole under its first seq."""

    frames: bytes
    after: Open
    approval: tuple[str, str] | None
    step_started: bool
    first: int = 0
    last: int = 0
    split: list[bytes] | None = None

    @property
    def events(self) -> int:
        """How many of the log's events it holds."""
        return self.last - self.first + 1 if self.first else 1

    def at(self, seq: int) -> bytes:
        """The frames of the chunk at ``seq``: a run's are cut out the first time (one
        AG-UI frame per event) and kept cut."""
        if not self.first:
            return self.frames
        if self.split is None:
            self.split = self.frames.split(b"\n\n")
        return self.split[seq - self.first] + b"\n\n"


@dataclass(slots=True)
class Translation:
    """One stream's chunks mapped in seq order, shared by its AG-UI viewers."""

    mapper: Mapper
    seq: int = 0
    kept: dict[int, Mapped] = field(default_factory=dict)
    """By seq; a run of text deltas under its first (``find``)."""
    order: deque[int] = field(default_factory=deque)
    """The seqs ``kept`` is keyed by, oldest first."""
    held: int = 0
    """Events kept, at most ``KEEP_EVENTS``."""
    longest: int = 1
    """Events of the longest run kept yet (how far back ``find`` looks; at most
    ``KEEP_EVENTS``)."""
    heads: tuple[bytes, str, bytes, bytes] = (b"", "", b"", b"")
    """The last text part and message ``add_run`` mapped, and their ``content_heads``."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_in: bytes = b""
    """The last run of AI SDK frames mapped whole: the fan-out hands the same ``bytes``
    object to every viewer, so the next viewer's write (``Viewer.writer``) is one identity
    check."""
    last_out: bytes = b""
    last_plain: bool = True
    """``last_in`` held no approval request and no step start (nothing a run tracks)."""

    def add(self, frame: frames.Frame) -> Mapped:
        """Map the event of ``frame`` (the one after ``self.seq``) and keep its frames."""
        seq, eid, data, part, delta = frame
        if part:
            fast = self._text_delta(eid, part, delta)
            if fast is not None:
                return self._keep(seq, Mapped(fast, self.mapper.state, None, False))
        chunk = _DECODE(data.decode())
        events = self.mapper.feed(seq, chunk)
        kind = chunk.get("type")
        approval = None
        if kind == "tool-approval-request":
            approval = (str(chunk.get("approvalId")), str(chunk.get("toolCallId")))
        mapped = Mapped(
            frames.encode(events, eid) if events else b"",
            self.mapper.state,
            approval,
            kind == "start-step",
        )
        return self._keep(seq, mapped)

    def add_run(self, data: bytes) -> bytes | None:
        """The AG-UI frames of ``data`` when it is a run of text deltas of one open
        message that starts right after ``self.seq`` (``frames.delta_run``; most of what
        a generation streams), mapped as bytes, in one replace, and kept as one entry;
        None for any other chunk, which goes frame by frame (``add``)."""
        run = frames.delta_run(data)
        if run is None:
            return None
        first, last, part = run
        state = self.mapper.state
        message = self.mapper.texts.get(part.decode())
        if first != self.seq + 1 or message is None or state.run is None or state.ended:
            return None
        heads = self.heads
        if heads[0] != part or heads[1] != message:
            heads = self.heads = (part, message, *frames.content_heads(part, message))
        out = data.replace(heads[2], heads[3])
        self._keep(first, Mapped(out, state, None, False, first, last))
        return out

    def _text_delta(self, eid: bytes, part: bytes, delta: bytes) -> bytes | None:
        """A plain text delta of an open message, mapped without parsing its JSON (what
        ``Mapper.feed`` would make of it, byte for byte); None when no message is open."""
        state = self.mapper.state
        if state.run is None or state.ended:
            return None
        message = self.mapper.texts.get(part.decode())
        if message is None:
            return None
        return b"" if delta == b'""' else frames.content_frame(eid, message, delta)

    def _keep(self, first: int, mapped: Mapped) -> Mapped:
        """Keep ``mapped`` (its events from ``first`` on) under ``first``; the oldest go
        past ``KEEP_EVENTS``. A run is one entry, whatever its length: what keeping it
        costs the fan-out does not grow with it."""
        events = mapped.events
        self.seq = first + events - 1
        self.kept[first] = mapped
        self.order.append(first)
        self.held += events
        self.longest = max(self.longest, min(events, KEEP_EVENTS))
        while self.held > KEEP_EVENTS:
            self.held -= self.kept.pop(self.order.popleft()).events
        return mapped

    def find(self, seq: int) -> Mapped | None:
        """What is kept of the chunk at ``seq``: its own entry, or the run it is in."""
        kept = self.kept
        found = kept.get(seq)
        if found is not None:
            return found
        for start in range(seq - 1, seq - self.longest, -1):
            found = kept.get(start)
            if found is not None:
                return found if found.last >= seq else None
        return None

    async def catch_up(self, event_log: EventLog, stream_id: str, until: int) -> None:
        """Map the log's events after ``self.seq`` up to ``until``."""
        if self.seq >= until:
            return
        async for page in event_log.read_after(stream_id, self.seq, until):
            for event in page:
                if event.seq == self.seq + 1:
                    eid = sse.event_id(event.seq, event.tag)
                    self.add(frames.event_frame(event.seq, eid, event.data))


class Translations:
    """A front-end's translations, by stream id, least recently used dropped first."""

    def __init__(self, limit: int = KEEP_STREAMS) -> None:
        self.limit = limit
        self.streams: OrderedDict[str, Translation] = OrderedDict()

    def get(self, stream_id: str, thread_id: str) -> Translation:
        found = self.streams.get(stream_id)
        if found is None:
            found = Translation(Mapper(thread_id, stream_id))
            self.streams[stream_id] = found
            if len(self.streams) > self.limit:
                self.streams.popitem(last=False)
        else:
            self.streams.move_to_end(stream_id)
        return found


async def state_at(
    event_log: EventLog,
    stream_id: str,
    thread_id: str,
    seq: int,
    seen: int | None,
    *,
    transcript: Transcript | None = None,
) -> Open:
    """What is open after the client's resume point: after chunk ``seq`` whole (``seen``
    None), or after its first ``seen + 1`` AG-UI events. Folded from the log; the events
    up to there are fed to ``transcript`` too (the history a snapshot shows)."""
    mapper = Mapper(thread_id, stream_id)
    upto = seq if seen is None else seq - 1
    if upto > 0:
        async for page in event_log.read_after(stream_id, 0, upto):
            for event in page:
                for made in mapper.feed(event.seq, event.json()):
                    if transcript is not None:
                        transcript.feed(made)
    state = mapper.state
    if seen is not None:
        async for page in event_log.read_after(stream_id, seq - 1, seq):
            for event in page:
                for made in mapper.feed(event.seq, event.json())[: seen + 1]:
                    state = state.apply(made)
                    if transcript is not None:
                        transcript.feed(made)
    return state


@dataclass(slots=True)
class Viewer:
    """One response's place: what it skips of its first chunk, where it ends."""

    shared: Translation
    translation: Translation
    """``shared``, or a private one while the viewer is behind what ``shared`` keeps."""
    skip: int = 0
    """AG-UI events of the first chunk the client already holds (a cursor inside it)."""
    stop_at_wait: bool = False
    approvals: list[tuple[str, str]] = field(default_factory=list)

    def lookup(self, seq: int) -> Mapped | None:
        """The chunk at ``seq`` as already mapped: by the shared translation (a viewer on
        a private one rejoins it there), else by its own."""
        found = self.shared.find(seq)
        if found is not None:
            self.translation = self.shared
            return found
        own = self.translation
        return None if own is self.shared else own.find(seq)

    def writer(self, write: Writer) -> Writer:
        """``write`` (the socket's) of the AG-UI frames of each run the fan-out writes: a
        run already mapped for another viewer costs an identity check; a run ``direct``
        cannot map is refused (False) and goes to the viewer's task (``view``)."""

        def mapped(data: bytes) -> bool:
            t = self.translation
            if data is t.last_in and (t.last_plain or not self.stop_at_wait):
                return write(t.last_out)
            out = self.direct(data)
            return out is not None and write(out)

        return mapped

    def direct(self, data: bytes) -> bytes | None:
        """The AG-UI frames of a run of AI SDK frames, mapped without waiting (what the
        fan-out writes straight to the socket); None when that takes the log (a seq the
        translation has not reached), a skip, or a check of a wait: the viewer's task
        then does it (``view``). The run and its frames are kept on the translation, for
        the next viewer's ``writer`` to take as they are."""
        t = self.translation
        if self.skip:
            return None
        whole = t.add_run(data) if t is self.shared else None
        if whole is not None:
            t.last_in, t.last_out, t.last_plain = data, whole, True
            return whole
        out: list[bytes] = []
        plain = True
        for item in frames.aisdk_frames(data):
            if isinstance(item, bytes):
                out.append(item)
                continue
            mapped = self.lookup(item[0])
            if mapped is None:
                if item[0] != self.translation.seq + 1:
                    return None
                mapped = self.translation.add(item)
            if mapped.approval is not None or mapped.step_started:
                plain = False
                if self.stop_at_wait:
                    return None
            out.append(mapped.at(item[0]))
        t.last_in, t.last_out, t.last_plain = data, b"".join(out), plain
        return t.last_out


async def view(
    event_log: EventLog,
    stream_id: str,
    viewer: Viewer,
    opening: bytes,
    chunks: AsyncIterator[bytes],
) -> AsyncIterator[bytes]:
    """The AG-UI body: ``opening`` (the prelude), then each AI SDK chunk's AG-UI frames;
    a run (``stop_at_wait``) ends with an interrupt once its generation waits for a
    person on the approvals it showed."""
    try:
        if opening:
            yield opening
        async for chunk in chunks:
            fast = viewer.direct(chunk)
            if fast is not None:
                yield fast
                continue
            out: list[bytes] = []
            waiting = False
            for item in frames.aisdk_frames(chunk):
                if isinstance(item, bytes):
                    out.append(item)
                    continue
                seq = item[0]
                mapped = viewer.lookup(seq)
                if mapped is None:
                    t, mapped = await _mapped(event_log, stream_id, viewer.translation, item)
                    viewer.translation = t
                body = mapped.at(seq)
                if viewer.skip:
                    body, viewer.skip = frames.drop(body, viewer.skip), 0
                out.append(body)
                if mapped.step_started:
                    viewer.approvals.clear()
                if mapped.approval is not None and viewer.stop_at_wait:
                    viewer.approvals.append(mapped.approval)
                    waiting = await _waits(event_log, stream_id, seq)
                if waiting:
                    waited = interrupted(mapped.after, viewer.approvals)
                    out.append(frames.encode_at(waited, item[1]))
                    break
            if out:
                yield b"".join(out)
            if waiting:
                return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _mapped(
    event_log: EventLog, stream_id: str, t: Translation, frame: frames.Frame
) -> tuple[Translation, Mapped]:
    """The chunk at ``seq`` mapped: by the shared translation (caught up from the log
    first if it is behind), or, when it no longer keeps that seq, by a private one."""
    seq = frame[0]
    if seq <= t.seq:
        own = Translation(Mapper(t.mapper.thread_id, stream_id))
        await own.catch_up(event_log, stream_id, seq - 1)
        return own, own.add(frame)
    async with t.lock:
        await t.catch_up(event_log, stream_id, seq - 1)
        found = t.find(seq)
        if found is None:
            found = t.add(frame)
    return t, found


async def _waits(event_log: EventLog, stream_id: str, seen: int) -> bool:
    """Does the generation wait for a person on approvals asked up to ``seen``?"""
    meta = await event_log.fields(stream_id, "status", "wait_seq")
    return meta.get("status") == "waiting" and int(meta.get("wait_seq") or 0) <= seen
