"""The answer of a token route (``POST /v1/streams/{id}/tokens``,
``POST /v1/chat/{id}/tokens``): a token minted for a stream or a chat, for the lifetime,
the holder and (for a chat) the uses the request's optional body asks for. A chat token
carries only uses the minting key may do itself: ``submit`` needs its ``generate``,
``stop`` its ``cancel``; ``read`` is what a key with ``tokens`` hands out."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import Request
from fastapi.responses import JSONResponse

from broadcaster.auth import credentials, tokens
from broadcaster.http.access import AccessPolicy, presented_key
from broadcaster.http.bodies import parse_json, read_bytes
from broadcaster.http.errors import ApiError
from broadcaster.http.settings import Settings

_TTL_BODY_LIMIT = 4096
"""A body holds three small fields: no need for the general body limit."""

STREAM_FIELDS = frozenset({"ttl_seconds", "sub"})
"""What a viewer token's body may name; any other field is 422."""
CHAT_FIELDS = STREAM_FIELDS | {"rights", "daily_tokens"}
"""What a chat token's body may name: also ``rights``, the uses the token carries, and
``daily_tokens``, its holder's daily token budget (below the deployment's)."""
USE_RIGHTS: dict[tokens.ChatUse, str] = {"read": "tokens", "submit": "generate", "stop": "cancel"}
"""The key right each use of a chat token needs, besides ``tokens``."""


@dataclass(frozen=True, slots=True)
class Asked:
    """What a token request's body asks for."""

    ttl: int
    sub: str | None
    rights: tuple[tokens.ChatUse, ...] | None = None
    daily_tokens: int | None = None


async def minted_viewer(
    request: Request, settings: Settings, access: AccessPolicy, stream_id: str
) -> JSONResponse:
    """A viewer token for ``stream_id`` under ``{"viewer_token", "token_expires_at"}``."""
    secret = _secret(access)
    asked = await requested(request, settings, STREAM_FIELDS)
    token, expires = credentials.mint_viewer_token(
        secret, stream_id, asked.ttl, sub=asked.sub, audience=access.audience
    )
    return JSONResponse({"viewer_token": token, "token_expires_at": expires})


async def minted_chat(
    request: Request, settings: Settings, access: AccessPolicy, chat_id: str
) -> JSONResponse:
    """A chat token for ``chat_id`` under ``{"chat_token", "token_expires_at", "rights"}``:
    the uses asked for (all the key may hand out, unless the body names them); 403 for a
    use the key may not do itself."""
    secret = _secret(access)
    asked = await requested(request, settings, CHAT_FIELDS)
    key = await presented_key(request)
    held = key.rights if key is not None else None  # no keys configured: every use
    uses = _uses(asked.rights, held)
    token, expires = credentials.mint_chat_token(
        secret,
        chat_id,
        asked.ttl,
        sub=asked.sub,
        audience=access.audience,
        uses=uses,
        daily_tokens=asked.daily_tokens,
    )
    return JSONResponse({"chat_token": token, "token_expires_at": expires, "rights": list(uses)})


def _secret(access: AccessPolicy) -> str:
    if access.token_secret is None:
        raise ApiError(409, "tokens_disabled", "no BROADCASTER_TOKEN_SECRET is configured")
    return access.token_secret


def _uses(
    asked: tuple[tokens.ChatUse, ...] | None, held: Collection[str] | None
) -> tuple[tokens.ChatUse, ...]:
    """The uses a chat token carries: those asked, each allowed by a right of the key
    (``held``; None: every right); without a list, every use the key allows."""

    def allowed(use: tokens.ChatUse) -> bool:
        return held is None or USE_RIGHTS[use] in held

    if asked is None:
        return tuple(use for use in credentials.CHAT_USES if allowed(use))
    refused = [use for use in asked if not allowed(use)]
    if refused:
        raise ApiError(
            403,
            "forbidden",
            f"this API key may not hand out {refused[0]!r}: it needs the "
            f"{USE_RIGHTS[refused[0]]} right itself",
        )
    return asked


async def requested(request: Request, settings: Settings, fields: frozenset[str]) -> Asked:
    """The lifetime (or the default), the holder and the uses a token request's optional
    body asks for: ``{"ttl_seconds": n, "sub": "user-42", "rights": ["read"]}``,
    1 ≤ n ≤ ``Settings.mint_ttl_cap()`` (the max TTL, never beyond the max lifetime);
    a field not in ``fields`` is 422."""
    raw = await read_bytes(request, _TTL_BODY_LIMIT)
    if not raw:
        return Asked(settings.token_ttl_seconds, None)
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>, "sub": <string>}')
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            f"unknown field {unknown[0][:40]!r}: the body may name {', '.join(sorted(fields))}",
        )
    return Asked(_ttl(body, settings), _sub(body), _rights(body.get("rights")), _budget(body))


def _ttl(body: dict[str, Any], settings: Settings) -> int:
    value = body.get("ttl_seconds", settings.token_ttl_seconds)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>}')
    most_ttl = settings.mint_ttl_cap()
    if not 1 <= value <= most_ttl:
        raise ApiError(422, "invalid_request", f"ttl_seconds must be 1..{most_ttl}")
    return value


def _sub(body: dict[str, Any]) -> str | None:
    sub = body.get("sub")
    most = tokens.MAX_SUBJECT_CHARS
    if sub is not None and (not isinstance(sub, str) or not 1 <= len(sub) <= most):
        raise ApiError(422, "invalid_request", f"sub: a string of 1 to {most} characters")
    return sub


def _budget(body: dict[str, Any]) -> int | None:
    value = body.get(tokens.BUDGET_CLAIM)
    if value is not None and not tokens.is_budget(value):
        raise ApiError(422, "invalid_request", "daily_tokens: a non-negative integer")
    return value


def _rights(value: Any) -> tuple[tokens.ChatUse, ...] | None:
    known = get_args(tokens.ChatUse)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(v in known for v in value):
        raise ApiError(422, "invalid_request", f"rights: a non-empty list of {', '.join(known)}")
    return tuple(dict.fromkeys(value))
