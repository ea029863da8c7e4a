"""One viewer's delivery: every event after its resume point, exactly once, in order.

The rule is *deliver by seq*: a viewer remembers the last seq it sent; an event whose seq
is not greater is dropped; a seq more than one greater is a gap, filled by reading the
range from Redis. With that rule

* the replay/live seam needs no lock: a viewer subscribes for live events *first*, then
  replays from Redis, and the rule drops whatever both paths bring;
* a slow viewer's full buffer simply drops live events (and notes it); the viewer later
  catches up from Redis at its own pace, so nobody waits for it and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from broadcaster.core import sse
from broadcaster.core.sse import Writer
from broadcaster.fanout.replay import Replays
from broadcaster.fanout.subscription import Run, Subscription

log = logging.getLogger("broadcaster.hub")

Detach = Callable[[Subscription], bool]
"""Offered the subscription of a viewer that is caught up and parked (its socket is the
fan-out's and the keepalive's to write): True when its holder took it over, and the
viewer's task may end (``Subscription.handed``); its holder then calls
``Subscription.resume``'s target when it wakes, and ``Hub.leave`` when it is gone."""


async def deliver(
    sub: Subscription,
    replays: Replays,
    stream_id: str,
    writer: Writer | None,
    keepalive: float,
    *,
    compact: bool = False,
    held: list[Run] | None = None,
    detach: Detach | None = None,
) -> AsyncIterator[bytes]:
    """SSE bytes for the viewer of ``sub`` (subscribed, at ``sub.last``), until the
    terminal event went out or the subscription closed. ``held``: what its topic holds
    after ``sub.last`` up to its settled cursor (``Topic.since``), sent instead of a read
    of the log; what follows comes live. ``detach``: offered the subscription each time
    the viewer is caught up and parked; once taken, this ends (``sub.handed``) with the
    subscription still open."""
    if held is None:
        async for chunk in _catch_up(sub, replays, stream_id, None, compact=compact):
            yield chunk
    elif held:
        frames = [trim(held[0], sub.last)[2], *(run[2] for run in held[1:])]
        sub.last, sub.ended = held[-1][1], held[-1][3]
        yield b"".join(frames)
    while not (sub.ended or sub.closed):
        if sub.marks and not sub.marked and sub.idle():
            sub.marked = True  # the replay reached the tail: said once
            yield sse.caught_up(sub.tail())
            continue
        if detach is not None and writer is not None and sub.idle():
            sub.park(writer, asyncio.get_running_loop().time())
            if detach(sub):
                sub.handed = True
                return
            sub.direct = None
        woke = await wait_for_work(sub, writer, keepalive)
        if sub.closed or sub.ended:
            break
        if sub.notice is not None:
            frame, sub.notice = sub.notice, None
            yield frame
            continue
        if not woke or sub.ping_due:
            sub.ping_due = False
            yield sub.ping_frame()
        elif sub.overflowed:
            async for chunk in _refill(sub, replays, stream_id):
                yield chunk
        else:
            async for chunk in _buffered(sub, replays, stream_id):
                yield chunk
    if sub.closed and sub.farewell is not None:  # the hub drains: the response's last words
        frame, sub.farewell = sub.farewell, None
        yield frame


async def wait_for_work(sub: Subscription, writer: Writer | None, keepalive: float) -> bool:
    """Wait for work (a viewer's here, a Durable Streams reader's in ``durable.live``). A
    caught-up reader with a socket writer hands it to the fan-out meanwhile (``park``):
    live frames and keepalives then go straight to the socket, from the fan-out and from
    the hub's keepalive task, with no timer and no wakeup here."""
    if writer is not None and sub.idle():
        sub.park(writer, asyncio.get_running_loop().time())
        woke = await sub.wait(None)
    else:
        woke = await sub.wait(keepalive)
    sub.direct = None
    return woke


async def _catch_up(
    sub: Subscription,
    replays: Replays,
    stream_id: str,
    until: int | None,
    *,
    compact: bool = False,
) -> AsyncIterator[bytes]:
    """Events after ``sub.last`` (up to ``until``) from Redis (``compact``: folded). A page
    that reaches the topic's cursor may start its tail (``Topic.seed``)."""
    async for chunk, seq, ended in replays.pages(stream_id, sub.last, until, compact=compact):
        first, sub.last, sub.ended = sub.last + 1, seq, ended
        topic = sub.topic
        if not compact and topic is not None and not topic.tail:
            topic.seed((first, seq, chunk, ended))
        yield chunk
        if ended:
            return


async def _refill(sub: Subscription, replays: Replays, stream_id: str) -> AsyncIterator[bytes]:
    """A viewer that fell behind: its buffer dropped, the rest read from Redis at its own
    pace. Nothing is read before the socket takes more (the empty chunk waits for it to
    drain): a viewer that stopped reading costs no reads of Redis, and is cut off in time."""
    sub.overflowed = False
    sub.take()
    yield b""
    async for chunk in _catch_up(sub, replays, stream_id, None):
        yield chunk


async def _buffered(sub: Subscription, replays: Replays, stream_id: str) -> AsyncIterator[bytes]:
    """The live runs buffered for the viewer. A run that overlaps what the viewer was
    sent (at the seam with the replay) is cut; one after a gap waits for the gap to be
    read from the log."""
    out: list[bytes] = []
    for run in sub.take():
        if run[1] <= sub.last:
            continue
        first, last, frames, terminal = trim(run, sub.last)
        if first == sub.last + 1:
            out.append(frames)
            sub.last = last
            sub.ended = terminal
        else:
            if out:
                yield b"".join(out)
                out = []
            async for chunk in _catch_up(sub, replays, stream_id, last):
                yield chunk
            if sub.last != last:
                log.warning(
                    "stream %s: events %d..%d missing from Redis; ending response",
                    stream_id,
                    sub.last + 1,
                    last,
                )
                sub.close()
                return
        if sub.ended:
            break
    if out:
        yield b"".join(out)


def trim(run: Run, seq: int) -> Run:
    """The run from the event after ``seq`` on (the run as it is if it starts later).
    Frames hold one-line JSON, so ``\n\nid: `` occurs only where one frame ends and the
    next begins."""
    first, last, frames, terminal = run
    if first > seq:
        return run
    at = frames.find(b"\n\nid: %d." % (seq + 1))
    if at < 0:  # an id without a history tag (an event stored before tags, an error)
        at = frames.find(b"\n\nid: %d\n" % (seq + 1))
    if at < 0:
        raise ValueError(f"no event {seq + 1} in the run {first}..{last}")
    return seq + 1, last, frames[at + 2 :], terminal
