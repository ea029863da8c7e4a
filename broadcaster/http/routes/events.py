"""``GET /v1/events``: many streams on one SSE connection, named (``stream=``) or by the
prefix of their ids (``prefix=``: those that exist and those created while it is open),
so that a dashboard of jobs holds one connection, not one per job (a browser holds six
per origin over HTTP/1.1). How a connection follows its streams is ``dashboard/feed.py``;
its resume point, ``dashboard/cursor.py``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from broadcaster.chat.records import generation_prefix
from broadcaster.core import names
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.dashboard.cursor import BadResumePoint, Bases, Cursor, ResumePointGone, covered
from broadcaster.dashboard.feed import Connection
from broadcaster.http import openapi, openapi_requests
from broadcaster.http.access import authorize_read, check_chat, viewer_subject
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_event_log, get_hub, get_settings
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import api_router
from broadcaster.viewers.ask import from_request, kept_grant
from broadcaster.viewers.headers import STREAMING
from broadcaster.viewers.opening import admit_viewer, viewing_of
from broadcaster.viewers.response import SSEResponse

router = api_router()


@router.get(
    "/v1/events",
    response_class=Response,
    responses={
        **openapi.sse("the events of every stream followed"),
        204: {"description": "every named stream has ended and the resume point is its end"},
        **openapi.errors(400, 401, 403, 409, 429, 503),
    },
    openapi_extra=openapi_requests.EVENTS_QUERY,
)
async def events(request: Request) -> Response:
    """The events of every stream named (``stream``, repeatable), under a prefix
    (``prefix``, repeatable), or of a chat's answers (``chat``, repeatable: its
    generations, whose ids begin with the chat's prefix), each frame's ``data``
    ``{"stream", "seq", "event"}`` and its ``id`` the connection's resume point
    (``Last-Event-ID``, or ``?last_event_id=``)."""
    settings = await get_settings(request)
    streams, prefixes, chats = _named(request.query_params, settings)
    limit = settings.events_max_streams
    prefixes = await _authorized(request, streams, prefixes, chats)
    # An empty header names no resume point (as EventSource sends none): the query may.
    ask = from_request(request, streams)
    raw = ask.resume
    bases: Bases = request.app.state.bases
    cursor = Cursor.empty()
    slot = await admit_viewer(request, ask)
    if raw:
        with slot.guard():
            cursor = await _resumed(bases, raw, streams, prefixes, limit)
            ended = await _check(await get_event_log(request), cursor)
        if not prefixes and streams and all(s in ended for s in streams):
            slot.release()
            return Response(status_code=204)
    conn = Connection(
        hub=await get_hub(request),
        log=await get_event_log(request),
        bases=bases,
        cursor=cursor,
        streams=streams,
        prefixes=prefixes,
        limit=limit,
        keepalive=settings.keepalive_seconds,
        subject=viewer_subject(request),
    )
    viewing = viewing_of(request)
    return SSEResponse(
        conn.body,
        first=viewing.retry_field(),
        headers=STREAMING,
        send_timeout=viewing.settings.send_timeout,
        stream_id="",
        on_cut_off=viewing.cut_off,
        chunks=True,
        on_end=slot.release,
        token=viewing.held(kept_grant(request), ask.token),
    )


def _named(q: QueryParams, settings: Settings) -> tuple[list[str], list[str], list[str]]:
    """The streams, prefixes and chats the query names, each once: 400 for a bad name,
    for none, or for more than the settings allow one connection."""
    streams = list(dict.fromkeys(q.getlist("stream")))
    prefixes = list(dict.fromkeys(q.getlist("prefix")))
    chats = list(dict.fromkeys(q.getlist("chat")))
    _check_names(streams, [*prefixes, *chats])
    if not streams and not prefixes and not chats:
        raise ApiError(400, "bad_request", "name a stream=, a prefix= or a chat=")
    limit = settings.events_max_streams
    if len(streams) > limit:
        raise ApiError(400, "too_many_streams", f"at most {limit} streams per connection")
    if len(prefixes) + len(chats) > settings.events_max_prefixes:
        most = settings.events_max_prefixes
        raise ApiError(400, "too_many_prefixes", f"at most {most} prefixes per connection")
    return streams, prefixes, chats


async def _authorized(
    request: Request, streams: list[str], prefixes: list[str], chats: list[str]
) -> list[str]:
    """The prefixes to follow, once the caller may read them all: those named, then each
    chat's (``chat/records.py``: a chat's generations are the streams under it), opened
    as the chat's own routes are (a chat token opens its chat)."""
    if streams or prefixes:
        await authorize_read(request, streams, prefixes)
    for chat_id in chats:
        await check_chat(request, chat_id, "read")
    return list(dict.fromkeys([*prefixes, *map(generation_prefix, chats)]))


def _check_names(streams: list[str], prefixes: list[str]) -> None:
    """400 unless every ``stream`` is a stream id and every ``prefix`` a prefix: before
    access is checked, and before any of them reaches Redis or an ``id:`` line."""
    for what, values, valid in (
        ("streams", streams, names.is_stream_id),
        ("prefixes", prefixes, names.is_prefix),
    ):
        for value in values:
            if not valid(value):
                raise ApiError(
                    400, "bad_request", f"{value[:80]!r}: {what} match {names.STREAM_ID_PATTERN}"
                )


async def _resumed(
    bases: Bases, raw: str, streams: list[str], prefixes: list[str], limit: int
) -> Cursor:
    """The cursor of the resume point ``raw``, holding the positions of the streams this
    request covers (named, or under its prefixes) and at most ``limit`` of them: the
    positions of other streams are dropped unread, so a resume point reveals nothing of
    streams the request does not cover (nor whether they exist), and costs nothing for
    them."""
    named = set(streams)

    def covers(stream_id: str) -> bool:
        return stream_id in named or covered(stream_id, prefixes)

    try:
        return await bases.resume(raw, covers, limit)
    except BadResumePoint as exc:
        raise ApiError(400, "bad_resume_point", str(exc)) from None
    except ResumePointGone as exc:
        raise ApiError(409, "resume_point_unknown", str(exc)) from None


CHECK_AT_ONCE = 100
"""Positions of a resume point checked in one round trip to Redis."""


async def _check(event_log: EventLog, cursor: Cursor) -> set[str]:
    """Each position of a resume point (the streams the request covers: ``_resumed``),
    checked as the single-stream route checks its own, ``CHECK_AT_ONCE`` to a round
    trip; the streams whose end the client has seen."""
    ended: set[str] = set()
    points = list(cursor.positions.items())
    for i in range(0, len(points), CHECK_AT_ONCE):
        batch = points[i : i + CHECK_AT_ONCE]
        infos = await event_log.infos_at([(s, seq) for s, (seq, _) in batch])
        for (stream_id, (seq, tag)), info in zip(batch, infos, strict=True):
            if _checked(stream_id, seq, tag, info):
                ended.add(stream_id)
    return ended


def _checked(stream_id: str, seq: int, tag: str, info: StreamInfo | None) -> bool:
    """409 unless the stream holds the position (seq, tag); whether it ended there."""
    if info is None:
        if seq > 0:
            raise ApiError(
                409,
                "stream_gone",
                f"stream {stream_id!r} of the resume point is gone "
                "(expired or deleted): start over",
                stream=stream_id,
            )
        return False
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
    return bool(info.ended) and seq == info.last_seq
