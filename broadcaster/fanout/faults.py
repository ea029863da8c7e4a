"""What raised in the fan-out, kept to where it did: a viewer whose delivery raised is cut
and the others get the run, a message that could not be handled is read from the log
instead; the pub/sub connection and every other stream go on. Each failure is counted
and logged at most once a minute per stream and kind, not per event."""

from __future__ import annotations

import contextlib
import logging

from broadcaster.core import contain
from broadcaster.fanout.repair import Repairer
from broadcaster.fanout.replay import FanoutMetrics
from broadcaster.fanout.subscription import Run, Subscription, Topic

log = logging.getLogger("broadcaster.hub")


class Faults:
    """The hub's failures, each handled for the one viewer or stream it concerns."""

    def __init__(self, repairer: Repairer, metrics: FanoutMetrics | None) -> None:
        self.repairer = repairer
        self.metrics = metrics
        self._errors = contain.Throttle()

    def delivery_failed(
        self, topic: Topic, run: Run, failed: Subscription | None, exc: Exception
    ) -> None:
        """``failed``'s delivery of ``run`` raised (None: the loop itself did): that viewer
        is cut, and the viewers after it in the loop get the run, each on its own. A set
        is iterated in the same order while it does not change (nothing in a delivery
        changes it); whoever got the run already drops it again by its seq."""
        subs = list(topic.subs)
        rest = subs
        if failed is not None:
            self.cut(topic, failed, exc)
            rest = subs[subs.index(failed) + 1 :] if failed in subs else subs
        for sub in rest:
            if sub is failed:
                continue
            try:
                sub.deliver(run)
            except Exception as again:
                self.cut(topic, sub, again)

    def cut(self, topic: Topic, sub: Subscription, exc: Exception) -> None:
        """A viewer whose delivery raised: its response ends (it resumes from its
        ``Last-Event-ID``, with what it was sent), counted, and logged once a minute per
        stream, with the traceback."""
        with contextlib.suppress(Exception):
            sub.close()
        self.report(
            "viewer",
            topic.stream_id,
            "stream %s: a viewer's delivery raised %r; that viewer was cut, the stream's "
            "other viewers go on",
            topic.stream_id,
            exc,
            exc_info=exc,
        )

    def message_failed(self, topic: Topic | None, channel: bytes | None, exc: Exception) -> None:
        """Handling a pub/sub message (of ``channel``, ``topic``'s; None: the end of a
        read) raised: the connection and every other stream go on. The topic stops
        vouching for resume points and the log is asked where the stream stands (what
        the message would have brought is filled once; a viewer fills a missed run by
        its seqs)."""
        if topic is not None:
            topic.settled = False
            topic.forget()
            self.repairer.recover([topic])
        name = topic.stream_id if topic is not None else repr(channel)
        self.report(
            "message",
            name,
            "pub/sub: handling a message of %s raised %r; the connection and the other "
            "streams go on",
            name,
            exc,
            exc_info=exc,
        )

    def unreadable(self, topic: Topic, first: int, last: int) -> None:
        """A message whose frames no append made (seqs ``first``..``last``): what the log
        holds there goes to the viewers instead, as for a message too large to carry
        frames (a malformed stored event is read as an ``error``)."""
        self.report(
            "message",
            topic.stream_id,
            "stream %s: a message of events %d..%d whose frames no append made; read from "
            "the log instead",
            topic.stream_id,
            first,
            last,
            kind="unreadable",
        )
        self.repairer.fill(topic, last)

    def report(
        self,
        reason: str,
        name: str,
        message: str,
        *args: object,
        exc_info: Exception | None = None,
        kind: str | None = None,
    ) -> None:
        """One failure of ``reason`` (the metric's label) about ``name`` (a stream):
        counted, and logged at most once a minute per ``kind`` (the reason, unless said)
        and stream, with how many were held back since the last line."""
        if self.metrics is not None:
            self.metrics.delivery_errors.labels(reason).inc()
        count = self._errors.due((kind or reason, name))
        if count is not None:
            log.error(
                message + "%s",
                *args,
                contain.held_back(count),
                exc_info=exc_info,
                extra={"stream_id": name},
            )
