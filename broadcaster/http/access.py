"""Who may do what (docs/security.md): producers' API keys with their rights, the rate per
key, and viewer tokens, as FastAPI dependencies.

Headers and the ``token`` query parameter are read from the ``Request``, not declared
as parameters: the OpenAPI document describes the routes, not the credentials.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from broadcaster.core import auth, keys
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import RedisDep, SettingsDep, get_redis, get_settings
from broadcaster.http.settings import Settings

_BEARER = {"www-authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What the settings say about access, parsed once: the producers' keys (none: anyone
    may produce) and the secret of viewer tokens (None: anyone may read)."""

    api_keys: list[auth.ApiKey]
    token_secret: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Raises ValueError on a malformed ``BROADCASTER_API_KEYS``: a bad entry stops
        the start, it is not ignored."""
        secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        return cls(auth.parse_api_keys(settings.api_keys), secret)


async def get_access(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.access
    return policy


AccessDep = Annotated[AccessPolicy, Depends(get_access)]


def bearer(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def presented_key(request: Request) -> auth.ApiKey | None:
    """The configured API key the request presents, or None (no key, an unknown one, or
    no keys configured). Cached per request by FastAPI: hashed once for all its users."""
    policy = await get_access(request)
    presented = bearer(request)
    return auth.find_key(policy.api_keys, presented) if presented and policy.api_keys else None


KeyDep = Annotated[auth.ApiKey | None, Depends(presented_key)]


class ApiKeyRight:
    """``Depends(ApiKeyRight("publish"))``: with API keys configured, 401 without a known
    key and 403 when the key lacks the right."""

    def __init__(self, right: str) -> None:
        if right not in auth.RIGHTS:
            raise ValueError(f"no such right: {right!r}")
        self.right = right

    async def __call__(self, request: Request, key: KeyDep) -> None:
        if not (await get_access(request)).api_keys:
            return
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: Authorization: Bearer <key>",
                headers=_BEARER,
            )
        if self.right not in key.rights:
            raise ApiError(403, "forbidden", f"this API key may not {self.right}")


async def rate_limit(key: KeyDep, redis: RedisDep, settings: SettingsDep) -> None:
    """429 past ``rate_limit_per_minute`` requests by this key in this minute. Counted in
    Redis, so every front-end shares the count; without a key there is nothing to count
    (``ApiKeyRight`` has answered already)."""
    if key is None or not settings.rate_limit_per_minute:
        return
    minute = int(time.time() // 60)
    counter = keys.ratelimit_key(key.name, minute)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(counter)
        pipe.expire(counter, keys.RATELIMIT_TTL)
        count, _ = await pipe.execute()
    if count > settings.rate_limit_per_minute:
        retry = 60 - int(time.time()) % 60
        raise ApiError(
            429,
            "rate_limited",
            f"over {settings.rate_limit_per_minute} requests per minute for this key",
            headers={"retry-after": str(retry)},
        )


def producer(right: str) -> list[Any]:
    """The ``dependencies=`` of a producer's route: the key and its right, then its rate."""
    return [Depends(ApiKeyRight(right)), Depends(rate_limit)]


def check_viewer(request: Request, stream_id: str) -> None:
    """With a token secret configured, 401 without a valid viewer token for this very
    stream, as Bearer or ``?token=``. Called by ``viewer_token`` and by the SSE route
    itself, whose fast path runs no dependencies."""
    secret: str | None = request.app.state.access.token_secret
    if secret is None:
        return
    token = bearer(request) or request.query_params.get("token")
    if not token or not auth.verify_viewer_token(secret, token, stream_id):
        raise ApiError(
            401,
            "unauthorized",
            "a valid viewer token for this stream is required (Bearer or ?token=)",
            headers=_BEARER,
        )


def authorize_read(request: Request, streams: list[str], prefixes: list[str]) -> None:
    """May this request read every stream named and every stream under each prefix?
    Refused whole: 401 without a valid token, 403 when it does not cover one of them. A
    viewer token opens one stream: it covers a request for that stream alone."""
    secret: str | None = request.app.state.access.token_secret
    if secret is None:
        return
    token = bearer(request) or request.query_params.get("token")
    if not token:
        raise ApiError(
            401, "unauthorized", "a token for these streams is required", headers=_BEARER
        )
    if prefixes or not all(auth.verify_viewer_token(secret, token, s) for s in streams):
        raise ApiError(403, "forbidden", "this token does not open every stream asked for")


def viewer_subject(request: Request) -> str | None:
    """Who the viewer is, if its token says (what viewer counts report); None for tokens
    that name nobody."""
    subject: str | None = getattr(request.state, "subject", None)
    return subject


async def viewer_token(request: Request, stream_id: str) -> None:
    """The dependency form of ``check_viewer``."""
    check_viewer(request, stream_id)


async def check_chat(request: Request, chat_id: str, right: str | None) -> None:
    """A chat route's access. A chat token for this very chat opens it. Otherwise: with API
    keys configured, a route that spends (``right``: submit, stop) needs a key with that
    right, as the producers' routes do; with a token secret configured, any route needs a
    chat token or a known key. Called by the routes once they know the chat id (a
    submit's is in its body)."""
    policy = await get_access(request)
    token = bearer(request) or request.query_params.get("token")
    secret = policy.token_secret
    if secret is not None and token and auth.verify_chat_token(secret, token, chat_id):
        return
    key = await presented_key(request)
    if right is not None and policy.api_keys:
        await ApiKeyRight(right)(request, key)
        await rate_limit(key, await get_redis(request), await get_settings(request))
    elif secret is not None and key is None:
        raise ApiError(
            401,
            "unauthorized",
            "a chat token for this chat (or an API key) is required: Authorization: Bearer",
            headers=_BEARER,
        )
