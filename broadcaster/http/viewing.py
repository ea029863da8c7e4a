"""Viewers over SSE: the room a front-end has for one more (its connection limits, the
admission rate, a client's own limits), and the SSE response of one stream after a resume
point, which the stream's route and the chat routes answer with (each checks access its
own way first).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from broadcaster.auth import tokens
from broadcaster.auth.jwks import TokenVerifier
from broadcaster.auth.tokens import Grant
from broadcaster.chat.reset_step import VIEW as RESET_VIEW
from broadcaster.chat.reset_step import wanted as reset_step_wanted
from broadcaster.core import sse
from broadcaster.core.eventlog import StreamInfo
from broadcaster.core.sse import Writer
from broadcaster.fanout.hub import Hub
from broadcaster.http.access import (
    get_access,
    presented_token,
    read_refusal,
    token_grant,
    viewer_subject,
)
from broadcaster.http.errors import ApiError
from broadcaster.http.limits import Refused, Slot, Slots, client_address
from broadcaster.http.resources import get_event_log, get_hub, get_metrics, get_settings
from broadcaster.http.settings import Settings
from broadcaster.http.sse_response import SSEResponse

SSE_HEADERS = {
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
    # What app.SecurityHeaders adds to every other answer (this route runs below it).
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "cross-origin",
}


async def stream_response(
    request: Request,
    stream_id: str,
    resume: str | None,
    headers: dict[str, str] | None = None,
    *,
    compact: bool | None = None,
    presence: bool | None = None,
    body_filter: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None,
    direct_writer: Callable[[Writer], Writer] | None = None,
    reset_step: bool | None = None,
) -> Response:
    """The SSE response for ``stream_id`` after ``resume`` (None: from the first event),
    204 when the client has seen the end, or ApiError; access is the caller's to check.
    ``compact`` and ``presence`` default to the query's flags (``presence=False``: no
    caught-up mark either). ``body_filter`` (the chat and AG-UI routes') sees every chunk
    of the body: the response is never handed over (``SSEResponse.detach``) and takes
    direct writes only through ``direct_writer`` (the writer it makes of the socket's).
    ``reset_step`` defaults to the request's asking for it (``_reset_view``)."""
    if reset_step or (
        reset_step is None and reset_step_wanted(request.headers, request.query_params)
    ):
        body_filter, direct_writer = _reset_view(body_filter, direct_writer)
    after, tag = _resume_point(resume)
    hub, settings = await get_hub(request), await get_settings(request)
    slot, info = await _admitted(request, hub, stream_id, after, tag)
    metrics = await get_metrics(request)
    if info.ended and after == info.last_seq:
        slot.release()
        return Response(status_code=204)
    wants = _flag(request, "presence") if presence is None else presence
    compact = _flag(request, "compact") if compact is None else compact
    subject = viewer_subject(request)

    def body(writer: Writer | None) -> AsyncIterator[bytes]:
        chunks = hub.follow(
            stream_id,
            after,
            info,
            _filtered_writer(writer, direct_writer) if body_filter else writer,
            subject=subject,
            wants_presence=wants,
            compact=compact,
            detach=None if body_filter else response.detach,
            marks=presence is not False and _flag(request, "caught_up"),  # docs/resuming.md
        )
        return body_filter(chunks) if body_filter else chunks

    response = SSEResponse(
        body,
        first=retry_field(settings),
        headers=SSE_HEADERS | (headers or {}),
        send_timeout=settings.slow_viewer_timeout,
        stream_id=stream_id,
        on_cut_off=metrics.cut_off.inc,
        on_end=slot.release,
        resume=None if body_filter else hub.resume,
        leave=hub.leave,
    )
    return response


async def _admitted(
    request: Request, hub: Hub, stream_id: str, after: int, tag: str | None
) -> tuple[Slot, StreamInfo]:
    """The viewer's slot (``admit_viewer``) and the stream's state at its resume point,
    or the refusal; a viewer refused lets those waiting for its topic go on."""
    try:
        slot = await admit_viewer(request, [stream_id])
        with slot.guard():
            info = await _stream_state(request, hub, stream_id, after, tag)
            _check_resume_point(info, after, tag)
    except (Refused, ApiError):
        hub.arrivals.release(stream_id)  # no topic comes of this viewer: those waiting go on
        raise
    return slot, info


Filter = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def _reset_view(
    body_filter: Filter | None, direct_writer: Callable[[Writer], Writer] | None
) -> tuple[Filter, Callable[[Writer], Writer] | None]:
    """``body_filter`` and ``direct_writer`` of a reader that asked for the AI SDK 7's
    ``reset-step`` (``chat.reset_step.wanted``): a restarted step's ``start-step`` served
    as one, through the view every such reader of this front-end shares; its chunks
    through ``RESET_VIEW`` after the route's own filter; direct writes mapped by it
    where the route has none of its own (a route whose filter must see every chunk, a
    chat answer's, keeps taking none)."""
    if body_filter is None:
        return RESET_VIEW.frames, RESET_VIEW.writer
    inner = body_filter
    return (lambda chunks: RESET_VIEW.frames(inner(chunks))), direct_writer


def _filtered_writer(
    writer: Writer | None, direct_writer: Callable[[Writer], Writer] | None
) -> Writer | None:
    """The fan-out's direct writer of a response with a ``body_filter``: what
    ``direct_writer`` (the AG-UI routes', a ``reset-step`` reader's) makes of the socket's
    ``writer``, which maps each write and refuses (False) one it cannot map, so that the
    run goes to the viewer's task, through the filter; none without it."""
    if writer is None or direct_writer is None:
        return None
    return direct_writer(writer)


async def _stream_state(
    request: Request, hub: Hub, stream_id: str, after: int, tag: str | None
) -> StreamInfo:
    """The stream's state as of the resume point, or 404 (409: a Durable Stream). A
    reconnect to a front-end that watches the stream and holds the resume point, or a
    viewer from the start of a stream whose whole history its topic holds
    (``Hub.known``), reads nothing from Redis."""
    info = hub.known(stream_id, after, tag) if tag is not None or after == 0 else None
    if info is not None:
        if tag is not None:  # a resume (Last-Event-ID), not a start
            (await get_metrics(request)).resumed_from_memory.inc()
    else:
        event_log = await get_event_log(request)
        hub.arrivals.opening(stream_id)  # a herd behind this viewer waits for its topic
        try:
            info = await event_log.info(stream_id, at=after if tag else None)
        finally:
            if info is None or info.kind == "ds" or info.ended or hub.closing:
                hub.arrivals.release(stream_id)  # no topic comes of it: they go on
    if info is None:
        raise ApiError(404, "not_found", f"no stream {stream_id!r} (unknown or expired)")
    if info.kind == "ds":
        raise ApiError(
            409,
            "durable_stream",
            f"{stream_id!r} is a Durable Stream: read it at /v1/stream/{stream_id}",
        )
    return info


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


def _resume_point(raw: str | None) -> tuple[int, str | None]:
    resume = sse.parse_resume_point(raw)
    if resume is None:
        raise ApiError(400, "bad_resume_point", "Last-Event-ID is not an id this server issued")
    return resume


def _check_resume_point(info: StreamInfo, after: int, tag: str | None) -> None:
    """409 unless the client's history is a prefix of the stream's."""
    if after > info.last_seq:
        raise ApiError(
            409,
            "resume_point_ahead",
            f"resume point {after} is past the newest event {info.last_seq}: start over",
            last_event_id=info.last_seq,
        )
    if tag is not None and info.tag_at != tag:
        # The events this client saw up to ``after`` are not this stream's: Redis lost
        # writes and the stream was written again differently. Never splice.
        raise ApiError(
            409,
            "resume_point_unknown",
            f"event {after} you saw is not in this stream's history (it was lost and "
            "rewritten): start over",
            last_event_id=info.last_seq,
        )


async def viewers_response(request: Request, stream_id: str) -> JSONResponse:
    presence = request.app.state.presence.store
    (found,) = await presence.viewers([stream_id])
    return JSONResponse({"viewers": found.count, "subjects": found.subjects})


def retry_field(settings: Settings) -> bytes:
    """The ``retry:`` of one response, jittered (``BROADCASTER_RETRY_JITTER_MS``)."""
    jitter = int(random.random() * (settings.retry_jitter_ms + 1))  # randint's, cheaper
    return sse.retry(settings.retry_ms + jitter)


async def admit_viewer(request: Request, stream_ids: Sequence[str] = ()) -> Slot:
    """Room for one more SSE response here, reading ``stream_ids`` (those named), held
    until it ends: past the client's connection limits 429, then this viewer's turn at
    the front-end's admission rate, then the front-end's connection and per-stream viewer
    limits; past any, ``Refused`` with Retry-After (jittered past the rate, to spread the
    herd out), which an EventSource gets as a ``retry:`` (``limits.refused_answer``)."""
    hub, settings = await get_hub(request), await get_settings(request)
    slots: Slots = request.app.state.slots
    subject, address = viewer_subject(request), client_address(request)
    slots.check(subject, address)
    wait = hub.admit()
    if wait is None:
        raise Refused(
            503,
            "busy",
            "this front-end is admitting viewers as fast as it may; retry",
            random.randint(1, 3),
        )
    if wait:
        await asyncio.sleep(wait)
    check_room(request, hub, settings, stream_ids)
    return slots.take(subject, address)


def check_room(request: Request, hub: Hub, settings: Settings, stream_ids: Sequence[str]) -> None:
    """``room_refusal`` of the request, raised."""
    slots: Slots = request.app.state.slots
    refusal = room_refusal(
        hub,
        slots,
        settings,
        stream_ids,
        subject=viewer_subject(request),
        address=client_address(request),
    )
    if refusal is not None:
        raise refusal


def room_refusal(
    hub: Hub,
    slots: Slots,
    settings: Settings,
    stream_ids: Sequence[str],
    *,
    subject: str | None,
    address: str | None,
) -> Refused | None:
    """The room rule, once for the route and the viewers answered from the parser:
    ``Refused`` (503) at the front-end's connection limit (its open responses, and
    long-polls), or when a stream of ``stream_ids`` is at its viewer limit; and (429) at
    the client's own limits (its token's subject, its address); None: there is room."""
    if max(hub.connections, slots.open) >= settings.max_connections:
        return Refused(503, "busy", "this front-end is at its connection limit; retry", 2)
    for stream_id in stream_ids:
        if hub.viewers_of(stream_id) >= settings.max_viewers_per_stream:
            return Refused(
                503, "busy", "this stream is at its viewer limit on this front-end; retry", 2
            )
    try:
        slots.check(subject, address)
    except Refused as refused:
        return refused
    return None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A viewer of one stream that may watch it (``admission``): its resume point (the seq
    and history tag it saw) and who it is (its token's subject)."""

    after: int
    tag: str | None
    subject: str | None


def admission(
    verifier: TokenVerifier | None,
    stream_id: str,
    token: str | None,
    grant: Grant | None,
    resume: str | None,
) -> Admitted:
    """The one decision on a viewer of a stream, for the route (``viewer_admission``) and
    the viewers answered from the parser (``fast_viewer.py``) alike: may ``token`` read
    ``stream_id`` (401, 403: ``access.read_refusal``; a JWT's ``grant`` verified by the
    caller), and is ``resume`` a resume point this server issued (400)? Raises the
    ``ApiError`` to answer; the room for it is ``room_refusal``'s."""
    refusal = read_refusal(verifier, token, grant, [stream_id])
    if refusal is not None:
        raise refusal
    after, tag = _resume_point(resume)
    return Admitted(after, tag, grant.subject if grant is not None else None)


async def viewer_admission(request: Request, stream_id: str, resume: str | None) -> Admitted:
    """``admission`` of the SSE route's request (its token verified first, keys fetched
    if need be; its subject kept for the viewer counts)."""
    verifier = (await get_access(request)).verifier
    token = presented_token(request) if verifier is not None else None
    grant = None
    if verifier is not None and token and tokens.shape(token) == "jwt":
        grant = await token_grant(request, verifier, token)
    return admission(verifier, stream_id, token, grant, resume)


async def admit_long_poll(request: Request) -> Slot:
    """Room for one more Durable Streams long-poll, held until it answers: the
    front-end's connection limit and the client's, not the admission rate (a long-poll
    comes back after every answer: it is one reader, not a herd)."""
    hub, settings = await get_hub(request), await get_settings(request)
    check_room(request, hub, settings, ())
    slots: Slots = request.app.state.slots
    return slots.take(viewer_subject(request), client_address(request))
