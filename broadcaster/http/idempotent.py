"""``Idempotency-Key`` on the routes that start something (``POST /v1/chat``,
``POST /v1/generations``, ``POST /v1/streams/{id}/events``): the key checked and scoped
to its caller, claimed before the route acts, and settled with what the route answered
(``generations/idempotency.py`` keeps it in Redis). A route answers a replay itself,
from what it settled: the same generation's stream, the same id, the same seq."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from broadcaster.generations.idempotency import (
    BadKey,
    Claim,
    Idempotency,
    InFlight,
    Mismatch,
    body_hash,
    check_key,
)
from broadcaster.http.access import presented_key, presented_token
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_idempotency

HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
"""On an answer replayed for a retry: ``true``."""


@dataclass(slots=True)
class Once:
    """A request's idempotency: ``replay`` holds the first request's answer (the route
    answers it again and does nothing), else the route acts, then ``settle``s (or, when
    it fails, ``release``s: the key is free for a retry)."""

    store: Idempotency | None = None
    claim: Claim | None = None
    replay: dict[str, Any] | None = None

    async def settle(self, answer: dict[str, Any]) -> None:
        if self.store is not None and self.claim is not None:
            await self.store.settle(self.claim, answer)
            self.claim = None

    async def release(self) -> None:
        if self.store is not None and self.claim is not None:
            await self.store.release(self.claim)
            self.claim = None


async def begin(request: Request, route: str, body: Any) -> Once:
    """The request's ``Idempotency-Key`` claimed on ``route`` for its ``body`` (the JSON
    as sent); ``Once()`` without the header. 400 for a malformed key, 422 for a key used
    with another body, 409 while the first request with it is handled."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return Once()
    try:
        key = check_key(raw)
    except BadKey as exc:
        raise ApiError(400, "bad_idempotency_key", str(exc)) from None
    store = await get_idempotency(request)
    scope = await caller_scope(request)
    try:
        found = await store.claim(scope, route, key, body_hash(body))
    except Mismatch:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request body",
        ) from None
    except InFlight:
        raise ApiError(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being handled; retry shortly",
            headers={"retry-after": "1"},
        ) from None
    if isinstance(found, Claim):
        return Once(store, found)
    return Once(store, None, found)


async def caller_scope(request: Request) -> str:
    """Whose keys these are: the API key's digest, else the token's hash, else the open
    deployment's one scope. A key of one caller never answers another's request."""
    key = await presented_key(request)
    if key is not None:
        return "key:" + key.digest.hex()
    token = presented_token(request)
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "open"
