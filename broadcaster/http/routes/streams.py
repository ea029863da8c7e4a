"""``/v1/streams/{id}/events``: publish to a stream, and watch it as Server-Sent Events.

The SSE route's logic is ``open_events``, a plain function: the FastAPI route calls it,
and so does ``events_fast_path``, which ``BroadcasterApp`` runs below FastAPI's
middleware stack to keep an open viewer's memory down (see ``app.py``). Dependencies do
not run on the fast path, so ``open_events`` checks the id and the viewer's token itself,
with the same checkers the dependencies use. The SSE response itself, and the room for
one more viewer, are ``http/viewing.py``'s (the chat routes answer with it too).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from broadcaster.http import idempotent, openapi
from broadcaster.http.access import producer, viewer_token
from broadcaster.http.bodies import read_json
from broadcaster.http.errors import ApiError, handle_error
from broadcaster.http.feeds import append_feed
from broadcaster.http.resources import EventLogDep, MetricsDep, SettingsDep
from broadcaster.http.stream_ids import check_stream_id, producible, valid_stream_id
from broadcaster.http.viewing import (
    SSE_HEADERS,
    stream_response,
    viewer_admission,
    viewers_response,
)

router = APIRouter()


@router.post(
    "/v1/streams/{stream_id}/events",
    status_code=201,
    openapi_extra=openapi.PUBLISH_BODY,
    responses=openapi.ok(201, openapi.Published, "appended")
    | openapi.errors(400, 401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("publish"), Depends(producible)],
)
async def publish(
    stream_id: str,
    request: Request,
    *,
    event_log: EventLogDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    expected_last_event_id: int | None = None,
) -> JSONResponse:
    """Append one event, or a list appended atomically. With
    ``?expected_last_event_id=N`` the append only happens if the stream is at seq N.
    With ``Idempotency-Key``, a retry answers the first append's seq and appends
    nothing."""
    body = await read_json(request, settings.max_body_bytes)
    events = body if isinstance(body, list) else [body]
    # The stream and the expected seq are part of what a retry must repeat.
    once = await idempotent.begin(request, f"publish {stream_id} {expected_last_event_id}", events)
    if once.replay is not None:
        return JSONResponse(
            once.replay, status_code=201, headers={idempotent.REPLAYED_HEADER: "true"}
        )
    try:
        seq = await append_feed(event_log, stream_id, events, expected_last_event_id)
    except BaseException:
        await once.release()
        raise
    metrics.appended.inc(len(events))
    answer = {"last_event_id": seq}
    await once.settle(answer)
    return JSONResponse(answer, status_code=201)


@router.get(
    "/v1/streams/{stream_id}/events",
    response_class=Response,
    responses={
        **openapi.sse("the stream after the resume point", openapi.UI_MESSAGE_STREAM),
        204: {"description": "the resume point is the terminal event: nothing more"},
        **openapi.errors(400, 401, 403, 404, 409, 429, 503),
    },
    openapi_extra=openapi.LAST_EVENT_ID,
)
async def events(stream_id: str, request: Request, last_event_id: str | None = None) -> Response:
    """The SSE stream, resuming after ``Last-Event-ID`` (or ``?last_event_id``)."""
    return await open_events(request, stream_id, last_event_id)


async def events_fast_path(scope: Scope, receive: Receive, send: Send) -> None:
    """``events`` as a bare ASGI app, answering errors with the app's own handlers."""
    request = Request(scope, receive)
    try:
        stream_id = scope["path_params"]["stream_id"]
        response = await open_events(request, stream_id, request.query_params.get("last_event_id"))
    except Exception as exc:
        response = await handle_error(request, exc)
    for name in ("x-content-type-options", "cross-origin-resource-policy"):
        if name not in response.headers:
            response.headers[name] = SSE_HEADERS[name]
    del request  # not kept for the life of the stream
    await response(scope, receive, send)


async def open_events(request: Request, stream_id: str, last_event_id: str | None) -> Response:
    """The SSE response for ``stream_id`` after the resume point (the ``Last-Event-ID``
    header, else ``last_event_id``), 204 when the client has seen the end, or ApiError."""
    check_stream_id(stream_id)
    raw = request.headers.get("last-event-id")
    resume = last_event_id if raw is None else raw
    await viewer_admission(request, stream_id, resume)  # the fast path's, too
    return await stream_response(request, stream_id, resume)


@router.get(
    "/v1/streams/{stream_id}/viewers",
    responses=openapi.ok(200, openapi.ViewerCount, "its viewers on every front-end")
    | openapi.errors(401, 403, 404),
    dependencies=[Depends(valid_stream_id), Depends(viewer_token)],
)
async def viewers(stream_id: str, request: Request, event_log: EventLogDep) -> JSONResponse:
    """How many viewers the stream has on every front-end, and the subjects of those
    whose tokens name one."""
    if await event_log.info(stream_id) is None:
        raise ApiError(404, "not_found", f"no stream {stream_id!r} (unknown or expired)")
    return await viewers_response(request, stream_id)
