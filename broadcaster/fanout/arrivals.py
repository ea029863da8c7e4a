"""Viewers that arrive while their stream's topic is being set up wait for it.

A herd (after a deploy, or a front-end lost) reaches a front-end that watches none of its
streams yet. The first viewer of a stream reads where it stands and makes its topic;
until the topic has settled (and, for a short stream, read its history once:
``Repairer.wait_for``), every other viewer of it would read the log itself. With this,
they wait instead: for the first viewer's read (``opening``), then for the topic
(``Repairer.wait_for``), and are then served from what the topic holds. Each wait is
bounded by ``SETTLE_WAIT``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from broadcaster.fanout.repair import SETTLE_WAIT, Repairer
from broadcaster.fanout.subscription import Topic


class Arrivals:
    def __init__(self, repairer: Repairer) -> None:
        self._repairer = repairer
        self._opening: dict[str, list[Callable[[], None]]] = {}
        """Streams a first viewer is reading the state of, and who waits for its topic
        (each holds a connection: the connection limit bounds them)."""

    def wait(self, stream_id: str, topic: Topic | None, then: Callable[[], None]) -> bool:
        """``then()`` once ``stream_id``'s topic (``topic``, or the one its first viewer
        is about to make) may vouch for more; False, and nothing called, when nothing
        that would help is coming. The first to ask about a stream with no topic is
        that first viewer: False, and the others wait for what it reads (``opening``),
        even those whose requests came in the same read of the sockets."""
        if topic is None:
            waiting = self._opening.get(stream_id)
            if waiting is None:
                self.opening(stream_id)
                return False
            waiting.append(then)
            return True
        if not topic.watched or topic.form != "sse" or topic.ended:
            return False
        return self._repairer.wait_for(topic, then)

    def opening(self, stream_id: str) -> None:
        """A viewer reads where ``stream_id`` stands, to make its topic: others wait for
        that (the first such reader's), until ``watched`` or ``release``, or at the
        latest ``SETTLE_WAIT`` seconds."""
        if stream_id not in self._opening:
            self._opening[stream_id] = []
            loop = asyncio.get_running_loop()
            loop.call_later(SETTLE_WAIT, self._expired, stream_id, self._opening[stream_id])

    def release(self, stream_id: str) -> None:
        """No topic comes of the read (the stream is unknown, a Durable Stream, ended):
        those waiting go on (and each is answered the usual way)."""
        _go_on(self._opening.pop(stream_id, []))

    def _expired(self, stream_id: str, waiting: list[Callable[[], None]]) -> None:
        if self._opening.get(stream_id) is waiting:
            self.release(stream_id)

    def watched(self, topic: Topic) -> None:
        """``topic`` was made: those waiting for it wait for it to settle."""
        waiting = self._opening.pop(topic.stream_id, None)
        for then in waiting or ():
            if not self._repairer.wait_for(topic, then):
                _go_on([then])


def _go_on(waiting: list[Callable[[], None]]) -> None:
    """Called once the current callback is over: never from inside a read or a fan-out."""
    if waiting:
        loop = asyncio.get_running_loop()
        for then in waiting:
            loop.call_soon(then)
