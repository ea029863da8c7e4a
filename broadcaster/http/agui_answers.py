"""A generation, or a thread's run, as an AG-UI SSE response: the prelude that re-opens
what is open at the resume point, the thread's history as a ``MESSAGES_SNAPSHOT`` (for a
credential that may read the thread; converted and encoded off the event loop when it is
long), then the rest, live."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from broadcaster.agui import frames
from broadcaster.agui.history import Transcript, from_ui, snapshot
from broadcaster.agui.projection import Open, prelude
from broadcaster.agui.views import Translations, Viewer, state_at, view
from broadcaster.chat.records import Chats
from broadcaster.http.access import chat_opens
from broadcaster.http.bodies import offloop
from broadcaster.http.chat_answers import GENERATION_HEADER
from broadcaster.http.errors import ApiError
from broadcaster.http.offloop import ITEM_BYTES
from broadcaster.http.resources import get_event_log
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.opening import stream_response


def _translations(request: Request) -> Translations:
    """The front-end's shared translations (made on first use)."""
    found: Translations | None = getattr(request.app.state, "agui_translations", None)
    if found is None:
        found = request.app.state.agui_translations = Translations()
    return found


async def history_for(
    request: Request, chats: Chats, thread: str, generation: str
) -> list[dict[str, Any]] | None:
    """The UI messages ``generation`` was submitted with, when it is the thread's latest
    answer (a queued turn's run shows no snapshot: its history is not written yet) and
    the request's credential may read the thread (one that may only submit gets its
    answer, and no more of the thread: ``access.chat_opens``)."""
    if not await chat_opens(request, thread, "read"):
        return None
    record = await chats.get(thread)
    return record.messages if record is not None and record.generation == generation else None


def _transcript(history: list[dict[str, Any]]) -> Transcript:
    return Transcript(from_ui(history))


def _resume_point(cursor: str | None, base: int) -> tuple[str | None, int | None, int]:
    """Where the view resumes: the chunk's point (or ``base``), the AG-UI events of it
    already seen, and its seq; 400 for a cursor this route did not issue."""
    parsed = frames.parse_cursor(cursor)
    if parsed is None:
        raise ApiError(400, "bad_request", "Last-Event-ID is not an id this route issued")
    point, seen = parsed
    if point is None and base:
        point = str(base)
    seq = frames.chunk_seq(point) if point else 0
    if seen is not None and seq < 1:
        raise ApiError(400, "bad_request", "Last-Event-ID is not an id this route issued")
    return point, seen, seq


async def agui_response(
    request: Request,
    stream_id: str,
    thread_id: str,
    cursor: str | None,
    *,
    base: int = 0,
    stop_at_wait: bool,
    history: list[dict[str, Any]] | None = None,
) -> Response:
    """``stream_id``'s AG-UI view after ``cursor`` (an AG-UI ``Last-Event-ID``), or after
    its event ``base``: the prelude that re-opens what is open there, then the rest. With
    ``history`` (the UI messages the answer was submitted with), a ``MESSAGES_SNAPSHOT``
    right after the run's start: that history and what the answer said before there.
    The history was admitted when it was read (``Chats.get``): its conversion and
    encoding wait for the pool, never refused."""
    point, seen, seq = _resume_point(cursor, base)
    event_log = await get_event_log(request)
    pool = offloop(request)
    weight = 0 if history is None else len(history) * ITEM_BYTES
    shared = _translations(request).get(stream_id, thread_id)
    transcript = None if history is None else await pool.queued(weight, _transcript, history)
    kept = shared.find(seq) if seen is None and transcript is None else None
    state = kept.after if kept is not None else Open()
    if kept is None and seq:
        state = await state_at(event_log, stream_id, thread_id, seq, seen, transcript=transcript)
    opened = prelude(state)
    skip = 0 if seen is None else seen + 1
    if transcript is not None and not state.ended:
        if not opened:  # from the start: the first chunk's RUN_STARTED is sent here
            opened, skip = [{"type": "RUN_STARTED", "threadId": thread_id, "runId": stream_id}], 1
        opened.insert(1, snapshot(transcript.messages))
    eid = (cursor or point or "0").encode()
    opening = await pool.queued(weight, frames.encode_at, opened, eid)
    viewer = Viewer(shared, shared, skip=skip, stop_at_wait=stop_at_wait)
    after = point if seen is None else str(seq - 1)
    # AG-UI's own view: exact, no presence notices nor marks, and no AI SDK chunk
    # (``reset-step``) reaches its readers.
    ask = from_request(request, [stream_id], query_resume=False)
    exact = ask._replace(
        resume=after or None, compact=False, presence=False, caught_up=False, reset_step=False
    )
    return await stream_response(
        request,
        exact,
        {GENERATION_HEADER: stream_id},
        body_filter=lambda chunks: view(event_log, stream_id, viewer, opening, chunks),
        direct_writer=viewer.writer,
        ending=frames.token_ended,
    )
