"""The answer of a token route (``POST /v1/streams/{id}/tokens``,
``POST /v1/chat/{id}/tokens``): a token minted for a stream or a chat, for the lifetime
and the holder the request's optional body asks for."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from broadcaster.auth import tokens
from broadcaster.http.access import AccessPolicy
from broadcaster.http.bodies import parse_json, read_bytes
from broadcaster.http.errors import ApiError
from broadcaster.http.settings import Settings

_TTL_BODY_LIMIT = 4096
"""A body holds two small fields: no need for the general body limit."""


Minter = Callable[..., tuple[str, int]]
"""``credentials.mint_viewer_token`` or ``credentials.mint_chat_token``."""


async def minted(
    request: Request,
    settings: Settings,
    access: AccessPolicy,
    mint: Minter,
    subject: str,
    *,
    name: str,
) -> JSONResponse:
    """The answer of a token route: ``mint``'s token for ``subject`` (a stream or a chat),
    for the lifetime and with the ``sub`` the body asks for, under
    ``{name, "token_expires_at"}``; 409 without a secret."""
    if access.token_secret is None:
        raise ApiError(409, "tokens_disabled", "no BROADCASTER_TOKEN_SECRET is configured")
    ttl, sub = await requested(request, settings)
    token, expires = mint(access.token_secret, subject, ttl, sub=sub, audience=access.audience)
    return JSONResponse({name: token, "token_expires_at": expires})


async def requested(request: Request, settings: Settings) -> tuple[int, str | None]:
    """The lifetime (or the default) and the holder a token request's optional body asks
    for: ``{"ttl_seconds": n, "sub": "user-42"}``, 1 ≤ n ≤ ``Settings.mint_ttl_cap()`` (the
    max TTL, never beyond the max lifetime); other fields are ignored."""
    raw = await read_bytes(request, _TTL_BODY_LIMIT)
    if not raw:
        return settings.token_ttl_seconds, None
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>, "sub": <string>}')
    value = body.get("ttl_seconds", settings.token_ttl_seconds)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>}')
    most_ttl = settings.mint_ttl_cap()
    if not 1 <= value <= most_ttl:
        raise ApiError(422, "invalid_request", f"ttl_seconds must be 1..{most_ttl}")
    sub = body.get("sub")
    most = tokens.MAX_SUBJECT_CHARS
    if sub is not None and (not isinstance(sub, str) or not 1 <= len(sub) <= most):
        raise ApiError(422, "invalid_request", f"sub: a string of 1 to {most} characters")
    return value, sub
