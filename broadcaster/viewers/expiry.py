"""Open responses end with their token: at its ``exp`` plus the leeway, or within a
second of its revocation (docs/security.md, "Token expiry and revocation").

Each response opened with a token holds an ``Expiry``; the front-end's ``Expiries``
keeps them in buckets of one second, with one timer, to the earliest bucket, for all of
them: a viewer costs its entry in a set, not a task or a timer, and nothing is done per
delivery. When a bucket is due, each of its responses is told (``Ending.end_token``) and
ends the way its protocol ends (a UI-message stream with ``data-token-expired``). A
revocation (``auth.revocations``) looks at every entry once, against a dict.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import anyio

from broadcaster.auth.tokens import Grant
from broadcaster.core import contain

log = logging.getLogger("broadcaster.viewers")

EXPIRED, REVOKED = "expired", "revoked"

PER_TURN = 2000
"""Responses ended in one turn of the event loop; the rest in the next ones (a herd whose
tokens were minted together ends together, without one long stall)."""


class Ending(Protocol):
    """A response that ends when its token does."""

    def end_token(self, reason: str) -> None:
        """End now, saying ``reason`` (``EXPIRED``, ``REVOKED``) as its protocol can."""
        ...


class Expiry:
    """One open response's token: when it ends (Unix seconds: ``exp`` plus the leeway),
    what names it for a revocation, and the response (``target``: the response's task's,
    then its ``Handed``'s once caught up)."""

    __slots__ = ("bucket", "ends_at", "issued", "jti", "subject", "target")

    def __init__(
        self, ends_at: float, jti: str | None, subject: str | None, issued: float | None
    ) -> None:
        self.ends_at = ends_at
        self.jti = jti
        self.subject = subject
        self.issued = issued
        self.target: Ending | None = None
        self.bucket = 0

    @classmethod
    def of(cls, grant: Grant | None, legacy: str | None, leeway: float) -> Expiry | None:
        """The expiry of a verified JWT's ``grant``, or of the ``legacy`` token (its
        expiry is in it); None without either."""
        if grant is not None and grant.expires is not None:
            return cls(grant.expires + leeway, grant.jti, grant.subject, grant.issued)
        if legacy is not None:
            return cls(int(legacy.split(".")[1]) + leeway, None, None, None)
        return None


class Held(NamedTuple):
    """A response's token as the response holds it: its entry, the front-end's
    ``Expiries`` it is in, and what the response says when it ends (``frame(reason)``:
    its protocol's last words; empty: it just ends)."""

    entry: Expiry
    expiries: Expiries
    frame: Callable[[str], bytes]


Revoked = Callable[[str | None, str | None, float | None], bool]
"""Whether a token of that id, subject and ``iat`` is revoked now
(``Revocations.revokes``)."""


class Expiries:
    """The open responses of this front-end that hold a token, by the second they end."""

    def __init__(self) -> None:
        self._buckets: dict[int, set[Expiry]] = {}
        self._due: list[int] = []
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0
        self.ended = 0
        """Responses ended by their token (a count the tests and metrics read)."""

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def watch(self, entry: Expiry, target: Ending) -> None:
        """``target`` ends at ``entry.ends_at`` (at once if that is past)."""
        entry.target = target
        key = math.ceil(entry.ends_at)
        entry.bucket = key
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            heapq.heappush(self._due, key)
        bucket.add(entry)
        if self._timer is None or key < self._timer_at:
            self._schedule()

    def forget(self, entry: Expiry) -> None:
        """The response is over: its token ends nothing more."""
        bucket = self._buckets.get(entry.bucket)
        if bucket is not None:
            bucket.discard(entry)
        entry.target = None

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._due and not self._buckets.get(self._due[0]):
            self._buckets.pop(heapq.heappop(self._due), None)  # emptied by ``forget``
        if not self._due:
            return
        self._timer_at = self._due[0]
        delay = max(0.0, self._timer_at - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now, ended = time.time(), 0
        while self._due and self._due[0] <= now and ended < PER_TURN:
            bucket = self._buckets.get(self._due[0], set())
            while bucket and ended < PER_TURN:
                self._end(bucket.pop(), EXPIRED)
                ended += 1
            if not bucket:
                self._buckets.pop(heapq.heappop(self._due), None)
        if ended >= PER_TURN:
            self._timer = asyncio.get_running_loop().call_soon(self._fire)
            return
        self._schedule()

    def end_revoked(self, revoked: Revoked) -> int:
        """End every response whose token is revoked now; how many."""
        found = [
            e
            for bucket in self._buckets.values()
            for e in bucket
            if revoked(e.jti, e.subject, e.issued)
        ]
        for entry in found:
            self._buckets.get(entry.bucket, set()).discard(entry)
            self._end(entry, REVOKED)
        return len(found)

    def _end(self, entry: Expiry, reason: str) -> None:
        target, entry.target = entry.target, None
        if target is None:
            return
        self.ended += 1
        try:
            target.end_token(reason)
        except Exception:
            contain.loop_failed("token-expiry", log, reason)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def closes(reason: str) -> bytes:
    """The last words of a response whose protocol has none for an ended token: it just
    ends (a Durable Streams reader reconnects from the offset it was sent last)."""
    return b""


class TokenBound:
    """A wait that ends with its token (a Durable Streams long-poll): ``with`` it around
    the wait, which its caller bounds by ``held.entry.ends_at`` (it then answers as a
    wait that timed out), and which a revocation cancels; ``reason`` says why (None: it
    was not)."""

    __slots__ = ("held", "reason", "scope")

    def __init__(self, held: Held | None) -> None:
        self.held = held
        self.reason: str | None = None
        self.scope = anyio.CancelScope()

    def __enter__(self) -> TokenBound:
        self.scope.__enter__()
        if self.held is not None:
            self.held.expiries.watch(self.held.entry, self)
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self.held is not None:
            self.held.expiries.forget(self.held.entry)
        return self.scope.__exit__(*exc)

    def end_token(self, reason: str) -> None:
        if reason == EXPIRED:
            return  # the wait ends by itself then (its caller bounds it)
        self.reason = reason
        self.scope.cancel()
