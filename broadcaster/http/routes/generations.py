"""``/v1/generations``: start a generation, read its status, cancel it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from broadcaster.auth import credentials
from broadcaster.core.eventlog import StreamEnded
from broadcaster.core.events import Usage
from broadcaster.generations.content import ContentFold
from broadcaster.generations.lifecycle import NoSuchGeneration, cancel
from broadcaster.generations.request import GenerationRequest, RequestInvalid, validate_request
from broadcaster.generations.start import start
from broadcaster.http import idempotent, openapi, openapi_requests
from broadcaster.http.access import (
    AccessDep,
    AccessPolicy,
    producer,
    submit_rate,
    viewer_token,
)
from broadcaster.http.bodies import read_json, strict_json
from broadcaster.http.budgets import with_user, within_budget
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import (
    EventLogDep,
    GenerationsDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
)
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import (
    api_router,
    check_not_reserved,
    new_stream_id,
    valid_stream_id,
)

router = api_router()


@router.post(
    "/v1/generations",
    status_code=202,
    openapi_extra=openapi_requests.body(GenerationRequest),
    responses=openapi.ok(202, openapi.GenerationCreated, "queued")
    | openapi.errors(400, 401, 403, 409, 413, 422, 429, 503),
    dependencies=[*producer("generate"), Depends(submit_rate)],
)
async def create_generation(
    request: Request,
    *,
    generations: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    access: AccessDep,
    user: Annotated[str | None, Depends(within_budget)],
) -> JSONResponse:
    """Queue a generation. With ``Idempotency-Key``, a retry answers the first
    request's generation and starts nothing. Its user (the key's name) is counted for
    what it uses (``GET /v1/usage``), 429 ``budget_exhausted`` over their daily budget."""
    body = await read_json(request, settings.max_body_bytes)
    once = await idempotent.begin(request, "generations", body)
    if once.replay is not None:
        replayed = _created(once.replay["id"], access, settings)
        return JSONResponse(replayed, status_code=202, headers={idempotent.REPLAYED_HEADER: "true"})
    try:
        job = with_user(_generation_request(body, settings), user)
        strict_json(job)
        if body.get("id"):
            check_not_reserved(body["id"])
        stream_id = body.get("id") or new_stream_id()
        await start(generations, jobs, settings.admission(), stream_id, job)
    except BaseException:
        await once.release()
        raise
    await once.settle({"id": stream_id})
    return JSONResponse(_created(stream_id, access, settings), status_code=202)


def _created(stream_id: str, access: AccessPolicy, settings: Settings) -> dict[str, Any]:
    """What answers a queued generation (a retry's, too: its viewer token minted anew)."""
    created: dict[str, Any] = {
        "id": stream_id,
        "status": "queued",
        "events_url": f"/v1/streams/{stream_id}/events",
        "status_url": f"/v1/generations/{stream_id}",
    }
    if access.token_secret is not None:
        token, expires = credentials.mint_viewer_token(
            access.token_secret, stream_id, settings.token_ttl_seconds, audience=access.audience
        )
        created |= {"viewer_token": token, "token_expires_at": expires}
    return created


def _generation_request(body: Any, settings: Settings) -> dict[str, Any]:
    """The request to store for the body, or 422 naming what is wrong."""
    try:
        return validate_request(body, settings.request_defaults())
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None


@router.get(
    "/v1/generations/{stream_id}",
    responses=openapi.ok(200, openapi.GenerationStatus, "the generation's status and turn")
    | openapi.errors(401, 403, 404),
    dependencies=[Depends(valid_stream_id), Depends(viewer_token)],
)
async def get_generation(stream_id: str, event_log: EventLogDep) -> JSONResponse:
    meta = await event_log.meta(stream_id)
    if meta is None or meta.get("kind") != "generation":
        raise ApiError(404, "not_found", f"no generation {stream_id!r}")
    request = json.loads(meta.get("request") or "{}")
    folding = ContentFold()
    model = None
    # Events, not a stored copy: one fold serves every view of a generation, and the
    # pages bound the memory a long one takes.
    async for page in event_log.read_after(stream_id, 0, int(meta.get("seq", 0))):
        for event in page:
            data = event.json()
            folding.feed(data)
            if event.type == "finish":
                model = (data.get("messageMetadata") or {}).get("model")
    return JSONResponse(
        {
            "id": stream_id,
            "status": meta.get("status", "queued"),
            "last_event_id": int(meta.get("seq", 0)),
            "text": meta["text"],
            "usage": Usage.from_snake(json.loads(meta["usage"])).snake()
            if meta.get("usage")
            else None,
            "error": meta.get("error") or None,
            "created_at": _iso(meta.get("created_at")),
            "updated_at": _iso(meta.get("updated_at")),
            # Requests stored before providers were named were Anthropic's.
            "provider": request.get("provider", "anthropic"),
            "model": model or request.get("model"),
            "content": folding.result(),
        }
    )


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds")


@router.post(
    "/v1/generations/{stream_id}/cancel",
    status_code=202,
    responses=openapi.ok(202, openapi.Cancelled, "cancelled: its stream ended with abort")
    | openapi.errors(401, 403, 404, 409, 429),
    dependencies=[Depends(valid_stream_id), *producer("cancel")],
)
async def cancel_generation(
    stream_id: str, event_log: EventLogDep, metrics: MetricsDep
) -> JSONResponse:
    try:
        await cancel(event_log, stream_id)
    except StreamEnded:
        raise ApiError(409, "ended", f"generation {stream_id!r} has already ended") from None
    except NoSuchGeneration:
        raise ApiError(404, "not_found", f"no generation {stream_id!r}") from None
    metrics.appended.inc()
    return JSONResponse({"id": stream_id, "status": "cancelled"}, status_code=202)
