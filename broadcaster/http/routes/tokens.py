"""``/v1/streams/{id}/tokens``: viewer tokens (HS256 JWTs whose ``read`` names the
stream), minted for a producer's backend to hand to its viewers."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from broadcaster.http import openapi, openapi_requests
from broadcaster.http.access import AccessDep, producer
from broadcaster.http.minting import TokenBody, minted_viewer
from broadcaster.http.resources import SettingsDep
from broadcaster.http.stream_ids import api_router, valid_stream_id

router = api_router()


@router.post(
    "/v1/streams/{stream_id}/tokens",
    openapi_extra=openapi_requests.body(TokenBody, required=False),
    responses=openapi.ok(200, openapi.ViewerToken, "a viewer token")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("tokens")],
)
async def mint_token(
    stream_id: str, request: Request, settings: SettingsDep, access: AccessDep
) -> JSONResponse:
    """A viewer token for any stream id, for a producer's backend to hand out."""
    return await minted_viewer(request, settings, access, stream_id)
