"""The answer of a token route (``POST /v1/streams/{id}/tokens``,
``POST /v1/chat/{id}/tokens``): a token minted for a stream or a chat, for the lifetime,
the holder and (for a chat) the uses the request's optional body asks for. A chat token
carries only uses the minting key may do itself: ``submit`` needs its ``generate``,
``stop`` its ``cancel``; ``read`` is what a key with ``tokens`` hands out."""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from broadcaster.auth import credentials, tokens
from broadcaster.http.access import AccessPolicy, presented_key
from broadcaster.http.bodies import parse_json, read_bytes, validated
from broadcaster.http.errors import ApiError
from broadcaster.http.settings import Settings

_TTL_BODY_LIMIT = 4096
"""A body holds three small fields: no need for the general body limit."""

USE_RIGHTS: dict[tokens.ChatUse, str] = {"read": "tokens", "submit": "generate", "stop": "cancel"}
"""The key right each use of a chat token needs, besides ``tokens``."""


class TokenBody(BaseModel):
    """What a viewer token's request may ask for (an empty body: the defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
    ttl_seconds: int | None = Field(None, ge=1)
    """The token's lifetime (default ``BROADCASTER_TOKEN_TTL_SECONDS``); 422 beyond the
    deployment's longest (``BROADCASTER_TOKEN_MAX_TTL_SECONDS``)."""
    sub: str | None = Field(None, min_length=1, max_length=tokens.MAX_SUBJECT_CHARS)
    """The holder: whose token it is."""


class ChatTokenBody(TokenBody):
    """What a chat token's request may ask for (an empty body: the defaults)."""

    rights: list[tokens.ChatUse] | None = Field(None, min_length=1)
    """The uses the token carries (default: every use the key may hand out); ``submit``
    needs the key's ``generate``, ``stop`` its ``cancel``."""
    daily_tokens: int | None = Field(None, ge=0)
    """The holder's daily token budget, when below the deployment's
    (``BROADCASTER_DAILY_TOKEN_BUDGET``)."""


async def minted_viewer(
    request: Request, settings: Settings, access: AccessPolicy, stream_id: str
) -> JSONResponse:
    """A viewer token for ``stream_id`` under ``{"viewer_token", "token_expires_at"}``."""
    secret = _secret(access)
    asked = await requested(request, TokenBody)
    token, expires = credentials.mint_viewer_token(
        secret, stream_id, _ttl(asked, settings), sub=asked.sub, audience=access.audience
    )
    return JSONResponse({"viewer_token": token, "token_expires_at": expires})


async def minted_chat(
    request: Request, settings: Settings, access: AccessPolicy, chat_id: str
) -> JSONResponse:
    """A chat token for ``chat_id`` under ``{"chat_token", "token_expires_at", "rights"}``:
    the uses asked for (all the key may hand out, unless the body names them); 403 for a
    use the key may not do itself."""
    secret = _secret(access)
    asked = await requested(request, ChatTokenBody)
    key = await presented_key(request)
    held = key.rights if key is not None else None  # no keys configured: every use
    uses = _uses(None if asked.rights is None else tuple(dict.fromkeys(asked.rights)), held)
    token, expires = credentials.mint_chat_token(
        secret,
        chat_id,
        _ttl(asked, settings),
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


B = TypeVar("B", bound=TokenBody)


async def requested(request: Request, model: type[B]) -> B:
    """What a token request's optional body asks for, as ``model`` (an empty body: the
    defaults); 422 naming what is wrong."""
    raw = await read_bytes(request, _TTL_BODY_LIMIT)
    return validated(model, parse_json(raw) if raw else {}, "not a token request")


def _ttl(asked: TokenBody, settings: Settings) -> int:
    """The lifetime asked for (or the default), at most ``Settings.mint_ttl_cap()``."""
    if asked.ttl_seconds is None:
        return settings.token_ttl_seconds
    most_ttl = settings.mint_ttl_cap()
    if asked.ttl_seconds > most_ttl:
        raise ApiError(422, "invalid_request", f"ttl_seconds must be 1..{most_ttl}")
    return asked.ttl_seconds
