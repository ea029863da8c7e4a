"""``/v1/chat``: the AI SDK's chat transport (``DefaultChatTransport`` with ``api`` set to
``{base}/v1/chat``), spoken directly: a submit starts a generation and answers with its
stream, a resume streams the running one again, a stop cancels it (the chat so far,
seeded or deleted: ``routes/chat_history.py``). A chat token (``POST
/v1/chat/{id}/tokens``) opens these routes for one chat and nothing else; only a chat's
owner, or an API key, uses it (``http/chat_access.py``).

A chat is a record (``chat/records.py``) naming its latest generation; the generations
themselves are ordinary ones, started and streamed by the same code as
``POST /v1/generations`` and ``GET /v1/streams/{id}/events``. Each route parses, calls
and answers: a submit's work is ``http/chat_submits.py``'s (its turn, ``chat/conversation.py``'s),
its answers and a resume as SSE are ``http/chat_answers.py``'s, a decision on a tool call
``http/decisions.py``'s.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.chat import conversation
from broadcaster.chat.approvals import ApprovalBody
from broadcaster.chat.convert import ChatBody
from broadcaster.chat.records import ChatRecord, Chats
from broadcaster.http import openapi, openapi_requests
from broadcaster.http.access import AccessDep, producer
from broadcaster.http.chat_access import opened, valid_chat_id
from broadcaster.http.chat_answers import resumed, stop_answer
from broadcaster.http.chat_submits import submitted
from broadcaster.http.decisions import decided
from broadcaster.http.errors import ApiError
from broadcaster.http.minting import ChatTokenBody, minted_chat
from broadcaster.http.resources import (
    ApprovalsDep,
    ChatsDep,
    EventLogDep,
    GenerationsDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
)
from broadcaster.http.stream_ids import api_router, valid_stream_id
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.chat_follow import chat_events
from broadcaster.viewers.opening import viewers_response

router = api_router()


@router.post(
    "/v1/chat",
    response_class=Response,
    openapi_extra=openapi_requests.body(ChatBody),
    responses={
        **openapi.sse("the generation's stream", openapi.SUBMIT_HEADERS),
        **openapi.errors(400, 401, 403, 409, 413, 422, 429, 503),
    },
)
async def submit(
    request: Request,
    *,
    chats: ChatsDep,
    generations: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    approvals: ApprovalsDep,
) -> Response:
    """Start the chat's next generation and answer with its stream; or, for a request
    that carries decisions on the tool calls the answer waits on, record them and answer
    with the rest of that answer. With ``Idempotency-Key``, a retry answers the first
    request's stream again and starts nothing. The credential is checked before the body
    is read, the chat it opens once the body names it; a large body is parsed, checked
    and converted off the event loop."""
    stores = conversation.Stores(chats, generations, jobs, approvals)
    return await submitted(request, stores, settings)


async def _chat(request: Request, chats: Chats, chat_id: str) -> ChatRecord | None:
    """The chat's record, after its id, the caller's access and ownership are checked."""
    record, _ = await opened(request, chats, chat_id, "read")
    return record


@router.get(
    "/v1/chat/{chat_id}/stream",
    response_class=Response,
    responses={
        **openapi.sse("the running generation", openapi.RESUME_HEADERS),
        204: {"description": "the chat has no running generation"},
        **openapi.errors(400, 401, 403, 404, 409, 429, 503),
    },
    openapi_extra=openapi_requests.CHAT_LAST_EVENT_ID,
)
async def resume(
    chat_id: str,
    request: Request,
    chats: ChatsDep,
    event_log: EventLogDep,
    # WorkflowChatTransport's name for it.
    startIndex: int | None = None,
) -> Response:
    """The running generation's stream from its first event (or after ``Last-Event-ID``),
    then live; 204 when nothing runs. With a run id for ``chat_id``
    (``WorkflowChatTransport``): that answer's stream from its chunk ``startIndex``; with
    a chat id and ``startIndex``, the latest generation's, as one run."""
    return await resumed(request, chats, event_log, chat_id, startIndex)


@router.get(
    "/v1/chat/{chat_id}/events",
    response_class=Response,
    responses={
        **openapi.sse("every answer of the chat in turn, each announced (data-chat-turn)"),
        **openapi.errors(400, 401, 403, 404, 429, 503),
    },
)
async def follow_chat(chat_id: str, request: Request, chats: ChatsDep) -> Response:
    """The chat's stream: every answer in turn, each opened by a transient
    ``data-chat-turn`` chunk (``{turn, generationId, userMessage}``), ids
    ``<turn>:<seq>.<tag>`` (``Last-Event-ID`` resumes across turns); without one, from
    the latest answer's start. Never ends by itself."""
    await opened(request, chats, chat_id, "read")
    return await chat_events(request, chat_id, from_request(request))


@router.get(
    "/v1/chat/{chat_id}/viewers",
    responses=openapi.ok(200, openapi.ViewerCount, "the viewers of its latest generation")
    | openapi.errors(401, 403, 404),
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
    responses=openapi.ok(202, openapi.ChatStopped, "its running generation was cancelled")
    | openapi.errors(401, 403, 404, 409, 429),
)
async def stop(
    chat_id: str, request: Request, chats: ChatsDep, event_log: EventLogDep, metrics: MetricsDep
) -> JSONResponse:
    """Cancel the chat's running generation: its stream ends with ``abort``."""
    await opened(request, chats, chat_id, "stop")
    generation = await stop_answer(chats, event_log, chat_id, chat="chat", answer="generation")
    metrics.appended.inc()
    body = {"id": chat_id, "generation_id": generation, "status": "cancelled"}
    return JSONResponse(body, status_code=202)


@router.post(
    "/v1/chat/{chat_id}/approvals",
    openapi_extra=openapi_requests.body(ApprovalBody),
    responses=openapi.ok(200, openapi.Decided, "the decision in force")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
)
async def decide_in_chat(
    chat_id: str, request: Request, chats: ChatsDep, approvals: ApprovalsDep, settings: SettingsDep
) -> JSONResponse:
    """Decide on a tool call the chat's answer waits on; the first decision wins."""
    record, _ = await opened(request, chats, chat_id, "submit")
    generation = record.generation if record is not None else None
    return await decided(request, approvals, settings, generation, chat_id)


@router.post(
    "/v1/generations/{stream_id}/approvals",
    openapi_extra=openapi_requests.body(ApprovalBody),
    responses=openapi.ok(200, openapi.Decided, "the decision in force")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("generate")],
)
async def decide_in_generation(
    stream_id: str, request: Request, approvals: ApprovalsDep, settings: SettingsDep
) -> JSONResponse:
    """Decide on a tool call a generation waits on; the first decision wins."""
    return await decided(request, approvals, settings, stream_id)


@router.post(
    "/v1/chat/{chat_id}/tokens",
    openapi_extra=openapi_requests.body(ChatTokenBody, required=False),
    responses=openapi.ok(200, openapi.ChatToken, "a chat token")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_chat_id), *producer("tokens")],
)
async def mint_chat_token(
    chat_id: str, request: Request, settings: SettingsDep, access: AccessDep
) -> JSONResponse:
    """A chat token for one chat, for an app's backend to hand to its browser: it may
    read the chat, and submit and stop only if the key may itself."""
    return await minted_chat(request, settings, access, chat_id)
