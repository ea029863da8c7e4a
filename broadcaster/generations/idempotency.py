"""``Idempotency-Key`` (the IETF HTTP APIs draft's header) on the requests that start
something: a key and the hash of the body it came with, kept for a day
(``keys.idempotency_key``), so that a retry of a request answers what the first one
answered and runs nothing again.

A request claims its key (one script: the first claims it, ``pending``; a later one with
another body is ``Mismatch``; one while the first is handled is ``InFlight``); the first
settles it with its answer (``done``) or, when it fails, drops the claim so that a retry
runs anew. A claim that is never settled (its front-end died) lapses after
``pending_ms``. Keys are scoped by the caller (its API key or token) and the route.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.core import keys
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script

KEY_MAX = 255
"""The longest ``Idempotency-Key`` taken (characters, printable ASCII)."""


class Mismatch(Exception):
    """The key was used with another body."""


class InFlight(Exception):
    """The first request with the key is still being handled."""


class BadKey(ValueError):
    """Not a key: empty, too long, or not printable ASCII."""


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds the key: ``settle`` it with its answer, or ``release`` it."""

    key: str
    token: str


def check_key(value: str) -> str:
    """``value`` as a key, or ``BadKey``. A structured header's string may be quoted
    (``"abc"``): the quotes are not part of the key."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= KEY_MAX or not all(" " <= c <= "~" for c in value):
        raise BadKey(f"Idempotency-Key must be 1 to {KEY_MAX} printable ASCII characters")
    return value


def body_hash(body: Any) -> str:
    """The hash of a JSON body, whatever its spacing and key order."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Idempotency:
    def __init__(
        self,
        redis: Redis,
        ttl: int,
        pending_ms: int,
        durability: Durability | None = None,
    ) -> None:
        self.ttl = ttl
        """How long an answer is kept (s): a retry within it gets it."""
        self.pending_ms = pending_ms
        """How long an unsettled claim holds its key (ms)."""
        self.durability = durability or Durability(redis)
        self._claim = redis.register_script(
            script("idempotency_claim.lua", "broadcaster.generations")
        )
        self._settle = redis.register_script(
            script("idempotency_settle.lua", "broadcaster.generations")
        )

    async def claim(self, scope: str, route: str, key: str, digest: str) -> Claim | dict[str, Any]:
        """This request's claim on ``key``, or the answer the first request recorded;
        ``Mismatch`` or ``InFlight``."""
        name = keys.idempotency_key(scope, route, key)
        token = secrets.token_hex(8)
        found = cast(
            list[bytes],
            await self.durability.script(self._claim, [name], [digest, token, self.pending_ms]),
        )
        state = found[0].decode()
        if state == "claimed":
            return Claim(name, token)
        if state == "mismatch":
            raise Mismatch(key)
        if state == "pending":
            raise InFlight(key)
        return cast(dict[str, Any], json.loads(found[1]))

    async def settle(self, claim: Claim, answer: dict[str, Any]) -> None:
        """Record ``answer`` for the key's retries."""
        raw = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        await self.durability.script(self._settle, [claim.key], [claim.token, raw, self.ttl])

    async def release(self, claim: Claim) -> None:
        """Drop the claim of a request that failed: a retry runs again."""
        await self.durability.script(self._settle, [claim.key], [claim.token, "", self.ttl])
