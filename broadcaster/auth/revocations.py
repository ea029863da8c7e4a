"""Tokens revoked before their expiry (``POST /v1/tokens/revoke``): by id (``jti``: that
token) or by subject (``sub``: every token of it issued before the revocation, so that
one minted after it works). Kept in Redis (``keys.REVOKED_KEY``) until no token they
name can be valid any more (the longest life a token may have here, and the leeway),
and in every front-end's memory: a request's token is checked against a dict, with no
round trip to Redis. A revocation is pushed to every front-end on the wake channels
(``revoke <until> <member>``); a front-end whose pushes may have been lost reads the
whole set again (``missed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from broadcaster.auth.tokens import Grant
from broadcaster.core import contain, keys
from broadcaster.core.connection import REDIS_ERRORS, publish_wake
from broadcaster.core.durability import Durability

log = logging.getLogger("broadcaster.auth")

PRUNE = 1000
"""Revocations no longer held, forgotten by each new one at most (the rest by the next,
or with the key's TTL)."""

CHANNEL_NAME = "revocations"
"""The wake channel revocations are pushed on (``keys.wake_channel`` of this name)."""


class TooMany(Exception):
    """As many revocations are held as ``limit`` allows; the oldest end in ``retry_after``
    seconds at the latest."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} revocations are held, the most allowed; retry later")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Revoked:
    """One revocation: a token's id, or a subject's tokens issued before ``at``; held
    until ``until`` (Unix seconds)."""

    jti: str | None
    subject: str | None
    at: float
    until: float

    def member(self) -> str:
        if self.jti is not None:
            return "j:" + self.jti
        return f"s:{int(self.at * 1000)}:{self.subject}"

    @classmethod
    def parse(cls, member: str, until: float) -> Revoked | None:
        kind, _, rest = member.partition(":")
        if kind == "j" and rest:
            return cls(rest, None, 0.0, until)
        at, _, subject = rest.partition(":")
        if kind == "s" and at.isdigit() and subject:
            return cls(None, subject, int(at) / 1000, until)
        return None


class Revocations:
    """The revocations of every front-end, held here (``jtis``, ``subjects``);
    ``on_revoked`` is told when one is learnt (its open responses are then ended)."""

    def __init__(self, redis: Redis, durability: Durability, *, keep: float, limit: int) -> None:
        """``keep``: how long a revocation is held (the longest a token may live here,
        and the leeway); ``limit``: the most held at once."""
        self.redis = redis
        self.durability = durability
        self.keep = keep
        self.limit = limit
        self.jtis: dict[str, float] = {}
        self.subjects: dict[str, tuple[float, float]] = {}
        """A subject: the latest revocation's time, and until when it is held."""
        self.on_revoked: Callable[[], None] | None = None
        self._loading: asyncio.Task[None] | None = None

    def revokes(self, jti: str | None, subject: str | None, issued: float | None) -> bool:
        """Whether a token of id ``jti``, subject ``subject`` and ``iat`` ``issued`` is
        revoked now (a subject's token with no ``iat`` is taken as issued before)."""
        now = time.time()
        if jti is not None and self.jtis.get(jti, 0.0) > now:
            return True
        if subject is not None:
            found = self.subjects.get(subject)
            if found is not None and found[1] > now:
                return issued is None or issued < found[0]
        return False

    def grant_revoked(self, grant: Grant) -> bool:
        """``revokes`` of a verified token."""
        return bool(self.jtis or self.subjects) and self.revokes(
            grant.jti, grant.subject, grant.issued
        )

    async def revoke(self, *, jti: str | None = None, subject: str | None = None) -> Revoked:
        """Revoke the token ``jti``, or the tokens of ``subject`` issued until now: held
        in Redis and here, and pushed to every front-end; ``TooMany`` past the limit."""
        now = time.time()
        revoked = Revoked(jti, None if jti else subject, now, now + self.keep)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.REVOKED_KEY, "-inf", now, start=0, num=PRUNE)
            pipe.zcard(keys.REVOKED_KEY)
            pipe.zrange(keys.REVOKED_KEY, 0, 0, withscores=True)
            over, held, oldest = await pipe.execute()
        if over:  # forgotten a batch at a time (ZREM: a command the narrow ACL user has)
            held -= await self.redis.zrem(keys.REVOKED_KEY, *over)
        if held >= self.limit:
            raise TooMany(self.limit, max(1, int(oldest[0][1] - now)) if oldest else 1)
        member = revoked.member()
        await self.durability.command(
            keys.REVOKED_KEY, "ZADD", keys.REVOKED_KEY, revoked.until, member
        )
        await self.redis.expire(keys.REVOKED_KEY, int(self.keep) + 1)
        self._learn(revoked)
        await publish_wake(self.redis, CHANNEL_NAME, f"revoke {revoked.until:.3f} {member}")
        return revoked

    async def load(self) -> None:
        """Every revocation held in Redis, read again (at start, and after pushes may
        have been lost)."""
        now = time.time()
        found: Any = await self.redis.zrangebyscore(keys.REVOKED_KEY, now, "+inf", withscores=True)
        jtis: dict[str, float] = {}
        subjects: dict[str, tuple[float, float]] = {}
        for raw, until in found:
            member = raw.decode() if isinstance(raw, bytes) else str(raw)
            revoked = Revoked.parse(member, float(until))
            if revoked is not None:
                _add(jtis, subjects, revoked)
        self.jtis, self.subjects = jtis, subjects
        self._told()

    async def start(self) -> None:
        """``load``, at the front-end's start; Redis not answering yet is logged, and the
        wake channels read the set once they are subscribed (``missed``)."""
        try:
            await self.load()
        except Exception as exc:
            log.warning("revocations not read at start (%s); read once Redis answers", exc)

    def _learn(self, revoked: Revoked) -> None:
        now = time.time()
        if len(self.jtis) + len(self.subjects) >= self.limit:  # forget what ended first
            self.jtis = {j: u for j, u in self.jtis.items() if u > now}
            self.subjects = {s: v for s, v in self.subjects.items() if v[1] > now}
        _add(self.jtis, self.subjects, revoked)
        self._told()

    def _told(self) -> None:
        if self.on_revoked is not None:
            self.on_revoked()

    # --- a listener of the wake channels (``fanout.wakes.Listener``) ---

    def woken(self, kind: str, arg: str) -> None:
        if kind != "revoke":
            return
        until, _, member = arg.partition(" ")
        try:
            revoked = Revoked.parse(member, float(until))
        except ValueError:
            revoked = None
        if revoked is None:
            log.warning("a revocation pushed that this version cannot read: %.80r", arg)
            return
        self._learn(revoked)

    def missed(self) -> None:
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self.load()
        except REDIS_ERRORS as exc:
            # The wake channels' loss is logged where it happens; they call ``missed``
            # again once Redis answers, and the list is read then.
            log.debug("revocations: not reloaded while Redis is unreachable (%s)", exc)
        except Exception:
            contain.loop_failed("revocations", log, "reload")

    async def aclose(self) -> None:
        task = self._loading
        if task is not None and not task.done():
            await contain.cancel_until_ended([task], raising=False)


def _add(
    jtis: dict[str, float], subjects: dict[str, tuple[float, float]], revoked: Revoked
) -> None:
    if revoked.jti is not None:
        jtis[revoked.jti] = max(jtis.get(revoked.jti, 0.0), revoked.until)
    elif revoked.subject is not None:
        at, until = subjects.get(revoked.subject, (0.0, 0.0))
        subjects[revoked.subject] = (max(at, revoked.at), max(until, revoked.until))
