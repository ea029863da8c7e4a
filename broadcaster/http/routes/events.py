"""``GET /v1/events``: many streams on one SSE connection, named (``stream=``) or by the
prefix of their ids (``prefix=``: those that exist and those created while it is open),
so that a dashboard of jobs holds one connection, not one per job (a browser holds six
per origin over HTTP/1.1). How a connection follows its streams is ``fanout/mux.py``;
its resume point, ``core/mux.py``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broadcaster.core import keys
from broadcaster.core.log import EventLog
from broadcaster.core.mux import BadResumePoint, Bases, Cursor, ResumePointGone
from broadcaster.fanout.mux import Connection
from broadcaster.http import openapi
from broadcaster.http.access import authorize_read, viewer_subject
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_event_log, get_hub, get_metrics, get_settings
from broadcaster.http.routes.streams import admit_viewer, retry_field
from broadcaster.http.sse_response import SSEResponse

router = APIRouter()

HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}


@router.get(
    "/v1/events",
    response_class=Response,
    responses={
        **openapi.sse("the events of every stream followed"),
        204: {"description": "every named stream has ended and the resume point is its end"},
        **openapi.errors(400, 401, 403, 409, 503),
    },
    openapi_extra=openapi.EVENTS_QUERY,
)
async def events(request: Request) -> Response:
    """The events of every stream named (``stream``, repeatable) or under a prefix
    (``prefix``, repeatable), each frame's ``data`` ``{"stream", "seq", "event"}`` and its
    ``id`` the connection's resume point (``Last-Event-ID``, or ``?last_event_id=``)."""
    q = request.query_params
    streams = list(dict.fromkeys(q.getlist("stream")))
    prefixes = list(dict.fromkeys(q.getlist("prefix")))
    settings = await get_settings(request)
    for value in streams + prefixes:
        if not keys.STREAM_ID_RE.match(value):
            raise ApiError(
                400,
                "bad_request",
                f"{value[:80]!r}: streams and prefixes match ^[A-Za-z0-9_-]{{1,64}}$",
            )
    if not streams and not prefixes:
        raise ApiError(400, "bad_request", "name a stream (stream=) or a prefix (prefix=)")
    limit = settings.events_max_streams
    if len(streams) > limit:
        raise ApiError(400, "too_many_streams", f"at most {limit} streams per connection")
    await authorize_read(request, streams, prefixes)
    subject = viewer_subject(request)
    raw = request.headers.get("last-event-id", q.get("last_event_id"))
    bases: Bases = request.app.state.bases
    event_log = await get_event_log(request)
    cursor = Cursor.empty()
    if raw:
        try:
            cursor = await bases.resume(raw)
        except BadResumePoint as exc:
            raise ApiError(400, "bad_resume_point", str(exc)) from None
        except ResumePointGone as exc:
            raise ApiError(409, "resume_point_unknown", str(exc)) from None
        ended = await _check(event_log, cursor)
        if not prefixes and streams and all(s in ended for s in streams):
            return Response(status_code=204)
    hub = await get_hub(request)
    await admit_viewer(hub, settings, "")
    conn = Connection(
        hub=hub,
        log=event_log,
        bases=bases,
        cursor=cursor,
        streams=streams,
        prefixes=prefixes,
        limit=limit,
        keepalive=settings.keepalive_seconds,
        subject=subject,
    )
    metrics = await get_metrics(request)
    return SSEResponse(
        conn.body,
        first=retry_field(settings),
        headers=HEADERS,
        send_timeout=settings.slow_viewer_timeout,
        stream_id="",
        on_cut_off=metrics.cut_off.inc,
        chunks=True,
    )


async def _check(event_log: EventLog, cursor: Cursor) -> set[str]:
    """Each position of a resume point, checked as the single-stream route checks its
    own; the streams whose end the client has seen."""
    ended: set[str] = set()
    for stream_id, (seq, tag) in cursor.positions.items():
        info = await event_log.info(stream_id, at=seq if tag else None)
        if info is None:
            if seq > 0:
                raise ApiError(
                    409,
                    "stream_gone",
                    f"stream {stream_id!r} of the resume point is gone "
                    "(expired or deleted): start over",
                    stream=stream_id,
                )
            continue
        if seq > info.last_seq:
            raise ApiError(
                409,
                "resume_point_ahead",
                f"stream {stream_id!r}: the resume point is past its newest event {info.last_seq}",
                stream=stream_id,
            )
        if tag and info.tag_at != tag:
            raise ApiError(
                409,
                "resume_point_unknown",
                f"stream {stream_id!r}: the event the client saw "
                "is not in its history (lost and rewritten): start over",
                stream=stream_id,
            )
        if info.ended and seq == info.last_seq:
            ended.add(stream_id)
    return ended
