"""``/v1/chat``: the AI SDK's chat transport (``DefaultChatTransport`` with ``api`` set to
``{base}/v1/chat``), spoken directly: a submit starts a generation and answers with its
stream, a resume streams the running one again, a stop cancels it, and the messages route
gives the chat so far. A chat token (``POST /v1/chat/{id}/tokens``) opens these routes
for one chat and nothing else.

A chat is a record (``core/chats.py``) naming its latest generation; the generations
themselves are ordinary ones, started and streamed by the same code as
``POST /v1/generations`` and ``GET /v1/streams/{id}/events``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.core import auth, keys
from broadcaster.core.chat import ChatBody, parse_body, response_message_id, to_request
from broadcaster.core.chats import ChatRecord, Chats
from broadcaster.core.log import EventLog
from broadcaster.core.logs import current_stream
from broadcaster.core.request import RequestInvalid
from broadcaster.core.ui_message import ChatMessages
from broadcaster.http import openapi
from broadcaster.http.access import AccessDep, check_chat, producer
from broadcaster.http.bodies import read_json, strict_json
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import (
    ChatsDep,
    EventLogDep,
    GenerationsDep,
    HubDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
)
from broadcaster.http.routes.generations import abort, admit, create
from broadcaster.http.routes.streams import admit_viewer, stream_response, viewers_response
from broadcaster.http.routes.tokens import minted
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id

router = APIRouter()

GENERATION_HEADER = "x-generation-id"
"""The answer's header naming the generation, for ``GET /v1/generations/{id}``."""


def check_chat_id(chat_id: str) -> None:
    """404 unless ``chat_id`` is a chat id (the grammar of stream ids)."""
    if not keys.STREAM_ID_RE.match(chat_id):
        raise ApiError(404, "not_found", "no such chat: ids match ^[A-Za-z0-9_-]{1,64}$")


async def valid_chat_id(chat_id: str) -> None:
    """The dependency form of ``check_chat_id``: before any access check."""
    check_chat_id(chat_id)


def _body_id(body: Any) -> str:
    """The chat id of a submit, before the rest of the body is checked: access first."""
    chat_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(chat_id, str) or not keys.STREAM_ID_RE.match(chat_id):
        raise ApiError(
            422,
            "invalid_request",
            "id: the chat id, a string matching ^[A-Za-z0-9_-]{1,64}$, is required",
            details=[{"loc": ["id"], "msg": "a chat id is required"}],
        )
    return chat_id


def _job(body: Any, settings: Settings) -> tuple[ChatBody, dict[str, Any]]:
    """The checked chat body and the generation request it converts to; 422 naming what
    is wrong."""
    # The body itself is stored (the chat's messages): NaN or a lone surrogate anywhere
    # in it could not be.
    strict_json(body)
    try:
        chat = parse_body(body)
        job = to_request(chat, settings.request_defaults())
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None
    return chat, job


async def _make_way(event_log: EventLog, chat: ChatBody, record: ChatRecord | None) -> None:
    """A chat runs one generation at a time: 409 while one runs, unless the request
    regenerates, which cancels the running one (it ends with ``abort``)."""
    if record is None:
        return
    info = await event_log.info(record.generation)
    if info is None or info.ended:
        return
    if chat.trigger != "regenerate-message":
        raise ApiError(
            409,
            "chat_busy",
            f"chat {chat.id!r} is generating; stop it (POST /v1/chat/{chat.id}/stop) or regenerate",
            generation_id=record.generation,
        )
    try:
        await abort(event_log, record.generation)
    except ApiError as exc:
        if exc.status != 409:  # ended meanwhile: nothing left to cancel
            raise


@router.post(
    "/v1/chat",
    response_class=Response,
    openapi_extra=openapi.CHAT_BODY,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the generation's stream"},
        **openapi.errors(401, 403, 409, 413, 422, 429, 503),
    },
)
async def submit(
    request: Request,
    *,
    chats: ChatsDep,
    event_log: EventLogDep,
    generations: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    hub: HubDep,
) -> Response:
    """Start the chat's next generation and answer with its stream."""
    body = await read_json(request, settings.chat_max_body_bytes)
    await check_chat(request, _body_id(body), "generate")
    chat, job = _job(body, settings)
    await admit(jobs, settings, job["provider"])
    generation = new_stream_id()
    # A front-end at its connection limit says so before it starts anything.
    await admit_viewer(hub, settings, generation)
    record = await chats.get(chat.id)
    await _make_way(event_log, chat, record)
    job["ui_message_id"] = response_message_id(chat.messages, generation)
    # Created before the chat names it, queued after: a submit that reads the record
    # meanwhile finds a generation that runs, never one that does not exist yet.
    await create(generations, generation, job)
    new = ChatRecord(generation, job["ui_message_id"], body["messages"])
    if not await chats.submit(chat.id, record.generation if record else None, new):
        await generations.discard(generation)
        raise ApiError(409, "chat_busy", f"another request started chat {chat.id!r} meanwhile")
    await jobs.enqueue(generation, job["provider"])
    return await stream_response(request, generation, None, {GENERATION_HEADER: generation})


async def _chat(request: Request, chats: Chats, chat_id: str) -> ChatRecord | None:
    """The chat's record, after its id and the caller's access are checked."""
    check_chat_id(chat_id)
    await check_chat(request, chat_id, None)
    record = await chats.get(chat_id)
    if record is not None:  # log lines of this request name the generation it serves
        current_stream.set(record.generation)
    return record


@router.get(
    "/v1/chat/{chat_id}/stream",
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the running generation"},
        204: {"description": "the chat has no running generation"},
        **openapi.errors(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=openapi.LAST_EVENT_ID,
)
async def resume(
    chat_id: str, request: Request, chats: ChatsDep, event_log: EventLogDep
) -> Response:
    """The running generation's stream from its first event (or after ``Last-Event-ID``),
    then live; 204 when nothing runs."""
    record = await _chat(request, chats, chat_id)
    if record is None:
        return Response(status_code=204)
    resume_point = request.headers.get("last-event-id")
    info = await event_log.info(record.generation)
    # Without a resume point the client holds nothing of this generation: an ended
    # one is not resumed (the AI SDK's meaning of 204). With one, the rest is served.
    if info is None or (info.ended and resume_point is None):
        return Response(status_code=204)
    headers = {GENERATION_HEADER: record.generation}
    # The AI SDK's resume replays the whole answer: folded, it is a few events, not one
    # per token (compact replays), and the message it rebuilds is the same.
    return await stream_response(
        request, record.generation, resume_point, headers, compact=resume_point is None
    )


@router.get(
    "/v1/chat/{chat_id}/viewers",
    responses=openapi.errors(401, 403, 404),
)
async def viewers(chat_id: str, request: Request, chats: ChatsDep) -> JSONResponse:
    """The viewers of the chat's latest generation, on every front-end."""
    record = await _chat(request, chats, chat_id)
    if record is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r}")
    return await viewers_response(request, record.generation)


@router.post(
    "/v1/chat/{chat_id}/stop",
    status_code=202,
    responses=openapi.errors(401, 403, 404, 409, 429),
)
async def stop(
    chat_id: str, request: Request, chats: ChatsDep, event_log: EventLogDep, metrics: MetricsDep
) -> JSONResponse:
    """Cancel the chat's running generation: its stream ends with ``abort``."""
    check_chat_id(chat_id)
    await check_chat(request, chat_id, "cancel")
    record = await chats.get(chat_id)
    if record is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    try:
        await abort(event_log, record.generation)
    except ApiError as exc:
        if exc.status == 409:
            raise ApiError(409, "ended", f"chat {chat_id!r} has no running generation") from None
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)") from None
    metrics.appended.inc()
    body = {"id": chat_id, "generation_id": record.generation, "status": "cancelled"}
    return JSONResponse(body, status_code=202)


@router.get("/v1/chat/{chat_id}/messages", responses=openapi.errors(401, 403, 404))
async def messages(
    chat_id: str, request: Request, chats: ChatsDep, event_log: EventLogDep
) -> JSONResponse:
    """The chat's UI messages so far, the assistant's folded from its events."""
    record = await _chat(request, chats, chat_id)
    meta = await event_log.meta(record.generation) if record else None
    if record is None or meta is None:
        if record is not None:  # its generation expired: so does the chat
            await chats.forget(chat_id)
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    folding = ChatMessages(record.messages, record.message_id)
    async for page in event_log.read_after(record.generation, 0, int(meta.get("seq", 0))):
        for event in page:
            folding.feed(event.json())
    return JSONResponse(
        {
            "id": chat_id,
            "generation_id": record.generation,
            "status": meta.get("status", "queued"),
            "messages": folding.result(),
        }
    )


@router.post(
    "/v1/chat/{chat_id}/tokens",
    openapi_extra=openapi.TOKEN_BODY,
    responses=openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_chat_id), *producer("tokens")],
)
async def mint_chat_token(
    chat_id: str, request: Request, settings: SettingsDep, access: AccessDep
) -> JSONResponse:
    """A chat token for one chat, for an app's backend to hand to its browser."""
    return await minted(request, settings, access, auth.mint_chat_token, chat_id, name="chat_token")
