"""A Redis lock that one process at a time holds for a round of shared work (the
front-ends' sweeps: overdue jobs, expired approvals, the chat pump).

Taken with ``SET key holder NX PX ms``: the first to ask gets it, and it expires by
itself, so a holder that dies in the middle frees it after ``ms``. Released with one
script (``scripts/release_lock.lua``) that deletes the key only while it still names its
holder. A release as two commands (``GET``, then ``DEL``) is not atomic: a holder whose
lock expired between the two, and was taken by another process, deleted the other's lock,
and a third then ran the same round beside the second.
"""

from __future__ import annotations

import secrets
from typing import cast

from redis.asyncio import Redis

from broadcaster.core.eventlog import script

_RELEASE = script("release_lock.lua")


class Lock:
    """The lock ``key``, held ``ms`` at most, by ``holder`` (a random name: each process
    its own, so that none releases another's)."""

    def __init__(self, redis: Redis, key: str, ms: int, holder: str | None = None) -> None:
        self.redis = redis
        self.key = key
        self.ms = ms
        self.holder = holder or secrets.token_hex(8)
        self._release = redis.register_script(_RELEASE)

    async def take(self) -> bool:
        """Whether this holder has it now (for ``ms``, unless released sooner)."""
        return bool(await self.redis.set(self.key, self.holder, nx=True, px=self.ms))

    async def release(self) -> bool:
        """Give it back if this holder still has it; False when it had expired (and
        perhaps another holds it now: that one keeps it)."""
        return cast(int, await self._release(keys=[self.key], args=[self.holder])) == 1
