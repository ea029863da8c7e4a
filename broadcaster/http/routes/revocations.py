"""``POST /v1/tokens/revoke``: end tokens before their expiry, by id (``jti``) or by
subject (``sub``: its tokens issued until now). The open responses of those tokens end
on every front-end within a second, and the tokens are refused until they expire
(``auth/revocations.py``; docs/security.md, "Token expiry and revocation"). Needs an API
key with the ``admin`` right."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broadcaster.auth import tokens
from broadcaster.auth.revocations import Revocations, TooMany
from broadcaster.http import openapi, openapi_requests
from broadcaster.http.access import AccessDep, producer
from broadcaster.http.bodies import parse_json, read_bytes, validated
from broadcaster.http.errors import ApiError
from broadcaster.http.stream_ids import api_router

router = api_router()

MAX_JTI_CHARS = 1024
"""A longer ``jti`` names no token this front-end accepts (a token is 16 KiB at most,
and ids are short)."""

_BODY_LIMIT = 4096


ONE_OF: dict[str, Any] = {
    "oneOf": [
        {"properties": {"jti": {"type": "string"}}, "required": ["jti"]},
        {"properties": {"sub": {"type": "string"}}, "required": ["sub"]},
    ]
}
"""``RevokeBody.one_of_them`` as JSON Schema."""


class RevokeBody(BaseModel):
    """What to revoke: one token by its ``jti``, or every token of a ``sub`` issued until
    now; one of the two."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_OF)

    jti: str | None = Field(None, min_length=1, max_length=MAX_JTI_CHARS)
    sub: str | None = Field(None, min_length=1, max_length=tokens.MAX_SUBJECT_CHARS)

    @model_validator(mode="after")
    def one_of_them(self) -> RevokeBody:
        if (self.jti is None) == (self.sub is None):
            raise ValueError("name a jti or a sub, one of the two")
        return self


class Revoked(BaseModel):
    """The revocation made: what it names, and until when it is held (Unix seconds)."""

    jti: str | None = None
    sub: str | None = None
    until: int


@router.post(
    "/v1/tokens/revoke",
    openapi_extra=openapi_requests.body(RevokeBody),
    responses=openapi.ok(200, Revoked, "revoked on every front-end")
    | openapi.errors(401, 403, 409, 413, 422, 429),
    dependencies=producer("admin"),
)
async def revoke(request: Request, access: AccessDep) -> JSONResponse:
    """Revoke a token (``{"jti": ...}``) or a subject's tokens issued until now
    (``{"sub": ...}``): their open responses end on every front-end, and they are 401
    ``token_revoked`` until they expire."""
    if access.verifier is None:
        raise ApiError(409, "tokens_disabled", "no token is accepted here: none to revoke")
    raw = parse_json(await read_bytes(request, _BODY_LIMIT))
    body = validated(RevokeBody, raw, "not a revocation")
    revocations: Revocations = request.app.state.revocations
    try:
        done = await revocations.revoke(jti=body.jti, subject=body.sub)
    except TooMany as exc:
        raise ApiError(
            429,
            "too_many_revocations",
            str(exc),
            headers={"retry-after": str(exc.retry_after)},
        ) from None
    answer = Revoked(jti=done.jti, sub=done.subject, until=int(done.until))
    return JSONResponse(answer.model_dump(exclude_none=True))
