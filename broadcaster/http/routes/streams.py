"""``/v1/streams/{id}/events``: publish to a stream, and watch it as Server-Sent Events.

The SSE route's logic is ``open_events``, a plain function: the FastAPI route calls it,
and so does ``events_fast_path``, which ``BroadcasterApp`` runs below FastAPI's
middleware stack to keep an open viewer's memory down (see ``app.py``). Dependencies do
not run on the fast path, so ``open_events`` checks the id itself and verifies the
viewer's token; what it asks (``viewers.ask``), whether it is let in
(``viewers.decision``) and its response (``viewers.opening``) are the viewers' package's,
as for the viewers answered from the parser.
"""

from __future__ import annotations

from functools import partial

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from broadcaster.auth import tokens
from broadcaster.http import idempotent, openapi, openapi_requests
from broadcaster.http.access import get_access, producer, token_grant, viewer_token
from broadcaster.http.errors import ApiError, handle_error
from broadcaster.http.event_bodies import PublishBody
from broadcaster.http.feeds import append_feed, read_batch
from broadcaster.http.resources import EventLogDep, MetricsDep, SettingsDep
from broadcaster.http.stream_ids import api_router, check_stream_id, producible, valid_stream_id
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.headers import SECURITY
from broadcaster.viewers.opening import stream_response, viewers_response

router = api_router()


@router.post(
    "/v1/streams/{stream_id}/events",
    status_code=201,
    openapi_extra=openapi_requests.body(PublishBody),
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
    # Checked only when large, in the pool: encoded a piece at a time there.
    batch = await read_batch(request, settings, partial(event_log.checked, pieces=True))
    events = batch.events
    # The stream and the expected seq are part of what a retry must repeat.
    once = await idempotent.begin(request, f"publish {stream_id} {expected_last_event_id}", events)
    if once.replay is not None:
        return JSONResponse(
            once.replay, status_code=201, headers={idempotent.REPLAYED_HEADER: "true"}
        )
    try:
        if batch.refused is not None:  # where the append would have refused them
            raise batch.refused
        seq = await append_feed(event_log, stream_id, events, expected_last_event_id, batch.stored)
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
    openapi_extra=openapi_requests.LAST_EVENT_ID,
)
async def events(stream_id: str, request: Request, last_event_id: str | None = None) -> Response:
    """The SSE stream, resuming after ``Last-Event-ID`` (or ``?last_event_id``)."""
    return await open_events(request, stream_id)


async def events_fast_path(scope: Scope, receive: Receive, send: Send) -> None:
    """``events`` as a bare ASGI app, answering errors with the app's own handlers."""
    request = Request(scope, receive)
    try:
        response = await open_events(request, scope["path_params"]["stream_id"])
    except Exception as exc:
        response = await handle_error(request, exc)
    for name, value in SECURITY.items():
        if name not in response.headers:
            response.headers[name] = value
    del request  # not kept for the life of the stream
    await response(scope, receive, send)


async def open_events(request: Request, stream_id: str) -> Response:
    """The SSE response for ``stream_id`` after the request's resume point, 204 when the
    client has seen the end, or the refusal; its token verified first (keys fetched if
    need be), and checked by ``decide``, the parser's path's check too."""
    check_stream_id(stream_id)
    ask = from_request(request, [stream_id])
    verifier = (await get_access(request)).verifier
    if verifier is not None and ask.token and tokens.shape(ask.token) == "jwt":
        await token_grant(request, verifier, ask.token)
    return await stream_response(request, ask, verifier=verifier)


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
