"""``/v1/generations``: start a generation, read its status, cancel it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from broadcaster.auth import credentials
from broadcaster.core.eventlog import EventLog, StreamEnded, StreamNotFound
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.content import ContentFold
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.request import GenerationRequest, RequestInvalid, validate_request
from broadcaster.http import openapi
from broadcaster.http.access import AccessDep, producer, viewer_token
from broadcaster.http.bodies import read_json, strict_json
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import (
    EventLogDep,
    GenerationsDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
)
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id, valid_stream_id

router = APIRouter()


@router.post(
    "/v1/generations",
    status_code=202,
    openapi_extra=openapi.model_body(GenerationRequest),
    responses=openapi.ok(202, openapi.GenerationCreated, "queued")
    | openapi.errors(401, 403, 409, 413, 422, 429, 503),
    dependencies=producer("generate"),
)
async def create_generation(
    request: Request,
    generations: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    access: AccessDep,
) -> JSONResponse:
    body = await read_json(request, settings.max_body_bytes)
    job = _generation_request(body, settings)
    strict_json(job)
    await admit(jobs, settings, job["provider"])
    stream_id = body.get("id") or new_stream_id()
    await launch(generations, jobs, stream_id, job)
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
    return JSONResponse(created, status_code=202)


async def admit(jobs: JobQueue, settings: Settings, provider: str) -> None:
    """422 when the deployment does not serve ``provider``, 503 when too many generations
    are in flight: what a new generation must pass before anything is stored.

    Whether a worker is alive right now does not matter: a provider the deployment serves
    (``BROADCASTER_PROVIDERS``, else the default provider and every provider a worker
    has ever advertised) is queued and waits for a worker, up to the queued timeout. A
    cold start or a restart of every worker is a server state, not the client's mistake."""
    depth, seen = await jobs.admission(provider)
    configured = settings.served_providers()
    if configured is not None:
        served = provider in configured
    else:
        served = seen or provider == settings.default_provider
    if not served:
        raise ApiError(
            422,
            "provider_unavailable",
            f"this deployment does not serve provider {provider!r}",
            details=[{"loc": ["provider"], "msg": f"{provider!r} is not served here"}],
        )
    if depth >= settings.max_generations_in_flight:
        raise ApiError(
            503,
            "busy",
            "too many generations in flight; retry later",
            headers={"retry-after": "5"},
        )


async def launch(
    generations: Generations, jobs: JobQueue, stream_id: str, job: dict[str, Any]
) -> None:
    """Create generation ``stream_id`` running ``job`` (a checked, stored request) and
    queue it for a worker; 409 when the id is taken."""
    await create(generations, stream_id, job)
    await jobs.enqueue(stream_id, job["provider"])


async def create(generations: Generations, stream_id: str, job: dict[str, Any]) -> None:
    """Create generation ``stream_id``, queued but not yet in a worker's queue; 409 when
    the id is taken."""
    current_stream.set(stream_id)
    if not await generations.create(stream_id, job):
        raise ApiError(409, "conflict", f"a stream with id {stream_id!r} already exists")


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
            "usage": json.loads(meta["usage"]) if meta.get("usage") else None,
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
    await abort(event_log, stream_id)
    metrics.appended.inc()
    return JSONResponse({"id": stream_id, "status": "cancelled"}, status_code=202)


async def abort(event_log: EventLog, stream_id: str) -> None:
    """End generation ``stream_id`` with ``abort``: 404 when there is no such generation,
    409 when it has already ended."""
    info = await event_log.info(stream_id)
    if info is None or info.kind != "generation":
        raise ApiError(404, "not_found", f"no generation {stream_id!r}")
    try:
        # The abort is appended here, at once; the worker sees the stream ended and
        # stops the model call (it polls, and its next append is refused anyway).
        await event_log.append(
            stream_id,
            [{"type": "abort", "reason": "cancelled"}],
            kind="generation",
            meta={"error": ""},
        )
    except StreamEnded:
        raise ApiError(409, "ended", f"generation {stream_id!r} has already ended") from None
    except StreamNotFound:
        raise ApiError(404, "not_found", f"no generation {stream_id!r}") from None
