"""A chat's answers as SSE responses: a submit's (the generation's stream, ending where
it waits for a person), a steer's (short), and a run's (``WorkflowChatTransport``: one
answer's chunks, exact, from an index), each with the headers that name the chat, the
generation and the run; and a resume's (``GET /v1/chat/{id}/stream``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from broadcaster.chat.conversation import run_meta
from broadcaster.chat.convert import chunk_window, parse_run_id, run_id
from broadcaster.chat.framing import LONE_FINISH, until_waiting
from broadcaster.chat.records import Chats
from broadcaster.chat.rewind import SCAN_LIMIT, STEP_START, rewind_to, step_window, tail_header
from broadcaster.core.eventlog import EventLog, StreamEnded
from broadcaster.core.events import Event, dump_event
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.lifecycle import NoSuchGeneration, cancel
from broadcaster.http.chat_access import opened
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_chats, get_event_log
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.headers import UI_MESSAGES
from broadcaster.viewers.opening import stream_response

GENERATION_HEADER = "x-generation-id"
"""The answer's header naming the generation, for ``GET /v1/generations/{id}``."""

CHAT_HEADER = "x-chat-id"
"""The submit's answer: the chat's id (the one the server assigned, if the body had none)."""

RUN_HEADER = "x-workflow-run-id"
"""The submit's answer: ``<chat>~<generation>~<base>``, where
``GET /v1/chat/{runId}/stream?startIndex=N`` resumes this very answer at its chunk N
(``WorkflowChatTransport``)."""

TAIL_HEADER = "x-workflow-stream-tail-index"
"""A run's stream: the index of the run's last chunk so far (-1: none yet); for a resume
from the tail rewound to a part's start, the index that makes the transport's count
start at that part (``chat/rewind.py``)."""

_BACK_PAGE = 256
"""Events read per page looking back for a part's start."""


def steered(chat_id: str, generation: str, event: dict[str, Any], base: int) -> Response:
    """``steer``'s answer is short: its transient ``event`` (``data-steered``) and a
    ``finish`` (no assistant message of its own: the running answer, which every tab
    follows, shows the message where it entered, and goes on)."""
    _, data = dump_event(event)  # compact JSON, as every other event is written
    body = f'data: {data.decode()}\n\ndata: {{"type":"finish"}}\n\ndata: [DONE]\n\n'
    headers = answer_headers(chat_id, generation, base)
    return Response(body, media_type="text/event-stream", headers=UI_MESSAGES | headers)


def answer_headers(chat_id: str, generation: str, base: int) -> dict[str, str]:
    """What names an answer: its generation, its chat and its run."""
    return {
        GENERATION_HEADER: generation,
        CHAT_HEADER: chat_id,
        RUN_HEADER: run_id(chat_id, generation, base),
    }


async def answer(request: Request, chat_id: str, generation: str, base: int) -> Response:
    """A submit's answer: ``generation``'s stream after its event ``base``, ending where
    the generation suspends to wait for a person (``until_waiting``)."""
    event_log = await get_event_log(request)
    ask = from_request(request, [generation])
    return await stream_response(
        request,
        ask._replace(resume=str(base) if base else None),
        answer_headers(chat_id, generation, base),
        body_filter=lambda chunks: until_waiting(event_log, generation, chunks),
    )


async def run_answer(
    request: Request,
    event_log: EventLog,
    run: tuple[str, str, int],
    start: int,
    *,
    follow: bool = False,
) -> Response:
    """One answer's stream (a run id's), from its chunk ``start``: exact, never compacted,
    no presence notices, so that chunk ``i`` is always event ``base + i + 1``; a
    negative ``start`` (the run's last ``-start`` chunks) is rewound to the start of the
    part it lands in, with the tail index that keeps the transport's count exact. A run's
    reconnect ends where its POST's answer would, at a wait for a person; one that
    ``follow``s the chat (a tab's resume) stays through it, as the chat's resume does."""
    chat_id, generation, base = run
    await opened(request, await get_chats(request), chat_id, "read")
    current_stream.set(generation)
    meta = await run_meta(event_log, chat_id, generation)
    if meta is None:
        raise ApiError(
            404, "not_found", f"no run {chat_id}~{generation}~{base} (unknown or expired)"
        )
    last_seq = int(meta.get("seq") or 0)
    after = chunk_window(base, last_seq, start)
    tail = last_seq - base - 1
    if start < 0 and after < last_seq:
        rewound = await _rewound(event_log, generation, base, after + 1)
        if rewound <= after:  # landed mid-part: served from the part's start
            after = rewound - 1
            tail = tail_header(rewound - base - 1, -start)
    headers = answer_headers(chat_id, generation, base) | {TAIL_HEADER: str(tail)}
    if meta.get("ended") and after == last_seq:
        # The client holds the whole answer; one that ended without ``finish`` gets one,
        # so that the transport stops reconnecting.
        lone = b"" if meta["ended"] == "finish" else LONE_FINISH
        return Response(lone, media_type="text/event-stream", headers=UI_MESSAGES | headers)
    # Exact: never compacted, no presence notices nor marks.
    exact = from_request(request, [generation])._replace(
        resume=str(after),
        compact=False,
        presence=False,
        caught_up=False,
    )
    return await stream_response(
        request,
        exact,
        headers,
        body_filter=lambda chunks: until_waiting(
            event_log, generation, chunks, finish_ends=True, stop_at_wait=not follow
        ),
    )


async def _rewound(event_log: EventLog, generation: str, base: int, asked: int) -> int:
    """Where a resume from the run's tail that asked for the event ``asked`` starts: the
    start of the part it lands in (``chat/rewind.py``), looked for back to the step's
    start, the run's first chunk, or ``SCAN_LIMIT`` events, in pages."""
    newest_first: list[Event] = []
    before = asked
    while len(newest_first) < SCAN_LIMIT and before > base + 1:
        page = await event_log.read_back(generation, before, base, _BACK_PAGE)
        if not page:
            break
        newest_first += page
        if any(e.type == STEP_START for e in page):
            break
        before = page[-1].seq
    return rewind_to(step_window(newest_first), asked)


async def stop_answer(
    chats: Chats, event_log: EventLog, chat_id: str, *, chat: str, answer: str
) -> str:
    """Cancel the chat's running answer (the chat and AG-UI stop routes, which call them
    a ``chat`` or a thread and its ``answer`` a generation or an answer); its id. 404 for
    a chat unknown or expired, 409 when nothing runs."""
    record = await chats.get(chat_id, whole=False)
    if record is None:
        raise ApiError(404, "not_found", f"no {chat} {chat_id!r} (unknown or expired)")
    if not record.generation:
        raise ApiError(409, "ended", f"{chat} {chat_id!r} has no running {answer}")
    try:
        await cancel(event_log, record.generation)
    except StreamEnded:
        raise ApiError(409, "ended", f"{chat} {chat_id!r} has no running {answer}") from None
    except NoSuchGeneration:  # it expired: the chat outlives its answers' streams
        raise ApiError(409, "ended", f"{chat} {chat_id!r} has no running {answer}") from None
    return record.generation


async def answered_by(chats: Chats, event_log: EventLog, thread_id: str, agent_id: str) -> None:
    """404 when ``agent_id`` (not ``default``) is not the provider of the thread's latest
    answer: a stop names the agent it stops."""
    if agent_id == "default":
        return
    record = await chats.get(thread_id, whole=False)
    meta = await event_log.meta(record.generation) if record is not None else None
    asked = json.loads(meta.get("request") or "{}") if meta else {}
    if isinstance(asked, dict) and asked.get("provider", agent_id) != agent_id:
        raise ApiError(404, "not_found", f"agent {agent_id[:80]!r} answers no run of this thread")


async def resumed(
    request: Request, chats: Chats, event_log: EventLog, chat_id: str, start_index: int | None
) -> Response:
    """``GET /v1/chat/{id}/stream``'s answer: the running generation's stream from its
    first event (or after ``Last-Event-ID``), then live; 204 when nothing runs. With a
    run id for ``chat_id`` (``WorkflowChatTransport``): that answer's stream from its
    chunk ``start_index``; with a chat id and ``start_index``, the latest generation's,
    as one run."""
    found = parse_run_id(chat_id)
    if found is not None:
        return await run_answer(request, event_log, found, start_index or 0)
    record, _ = await opened(request, chats, chat_id, "read")
    if record is None:
        return Response(status_code=204)
    if start_index is not None:
        # WorkflowChatTransport resuming by chat id (useChat's resume: true): the chat's
        # latest generation, as a run from its first event.
        return await run_answer(
            request, event_log, (chat_id, record.generation, 0), start_index, follow=True
        )
    ask = from_request(request, [record.generation], query_resume=False)
    resume_point = ask.resume
    info = await event_log.info(record.generation)
    # Without a resume point the client holds nothing of this generation: an ended
    # one is not resumed (the AI SDK's meaning of 204). With one, the rest is served.
    if info is None or (info.ended and resume_point is None):
        return Response(status_code=204)
    headers = {GENERATION_HEADER: record.generation}
    # The AI SDK's resume replays the whole answer: folded, it is a few events, not one
    # per token (compact replays), and the message it rebuilds is the same.
    return await stream_response(request, ask._replace(compact=resume_point is None), headers)
