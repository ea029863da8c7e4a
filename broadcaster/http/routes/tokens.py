"""``/v1/streams/{id}/tokens``: viewer tokens, minted for a producer's backend to hand
to its viewers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from broadcaster.core import auth
from broadcaster.http import openapi
from broadcaster.http.access import AccessDep, AccessPolicy, producer
from broadcaster.http.bodies import read_json
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import SettingsDep
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import valid_stream_id

router = APIRouter()

_TTL_BODY_LIMIT = 4096
"""A body holds one small field: no need for the general body limit."""


@router.post(
    "/v1/streams/{stream_id}/tokens",
    openapi_extra=openapi.TOKEN_BODY,
    responses=openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("tokens")],
)
async def mint_token(
    stream_id: str, request: Request, settings: SettingsDep, access: AccessDep
) -> JSONResponse:
    """A viewer token for any stream id, for a producer's backend to hand out."""
    return await minted(
        request, settings, access, auth.mint_viewer_token, stream_id, name="viewer_token"
    )


Minter = Callable[[str, str, int], tuple[str, int]]


async def minted(
    request: Request,
    settings: Settings,
    access: AccessPolicy,
    mint: Minter,
    subject: str,
    *,
    name: str,
) -> JSONResponse:
    """The answer of a token route: ``mint``'s token for ``subject``, for the lifetime the
    body asks for, under ``{name, "token_expires_at"}``; 409 without a secret."""
    if access.token_secret is None:
        raise ApiError(409, "tokens_disabled", "no BROADCASTER_TOKEN_SECRET is configured")
    ttl = await requested_ttl(request, settings)
    token, expires = mint(access.token_secret, subject, ttl)
    return JSONResponse({name: token, "token_expires_at": expires})


async def requested_ttl(request: Request, settings: Settings) -> int:
    """The lifetime a token request asks for in its optional body, or the default."""
    if await request.body():
        return await _ttl_from_body(request, settings)
    return settings.token_ttl_seconds


async def _ttl_from_body(request: Request, settings: Settings) -> int:
    """``{"ttl_seconds": n}``, 1 ≤ n ≤ ``token_max_ttl_seconds``; absent: the default."""
    body = await read_json(request, _TTL_BODY_LIMIT)
    value = body.get("ttl_seconds", settings.token_ttl_seconds) if isinstance(body, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>}')
    if not 1 <= value <= settings.token_max_ttl_seconds:
        raise ApiError(
            422,
            "invalid_request",
            f"ttl_seconds must be 1..{settings.token_max_ttl_seconds}",
        )
    return value
