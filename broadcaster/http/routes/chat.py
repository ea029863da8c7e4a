"""``/v1/chat``: the AI SDK's chat transport (``DefaultChatTransport`` with ``api`` set to
``{base}/v1/chat``), spoken directly: a submit starts a generation and answers with its
stream, a resume streams the running one again, a stop cancels it (the chat so far,
seeded or deleted: ``routes/chat_history.py``). A chat token (``POST
/v1/chat/{id}/tokens``) opens these routes for one chat and nothing else; only a chat's
owner, or an API key, uses it (``http/chat_access.py``).

A chat is a record (``chat/records.py``) naming its latest generation; the generations
themselves are ordinary ones, started and streamed by the same code as
``POST /v1/generations`` and ``GET /v1/streams/{id}/events``. A submit's turn (start,
enqueue, steer, interrupt, decide) is ``chat/conversation.py``'s; its answers as SSE are
``http/chat_answers.py``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.chat import conversation
from broadcaster.chat.approvals import (
    ApprovalBody,
    Approvals,
    Decision,
    Expired,
    Mismatch,
    NoSuchApproval,
    WaitEnded,
    parse_decision,
)
from broadcaster.chat.convert import ChatBody, parse_run_id
from broadcaster.chat.records import ChatRecord, Chats, generation_id
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.request import RequestInvalid
from broadcaster.http import idempotent, openapi, openapi_requests
from broadcaster.http.access import AccessDep, producer
from broadcaster.http.bodies import read_json
from broadcaster.http.chat_access import caller, check_owner, opened, valid_chat_id
from broadcaster.http.chat_answers import (
    GENERATION_HEADER,
    answer,
    run_answer,
    steered,
    stop_answer,
)
from broadcaster.http.errors import ApiError, refused
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
from broadcaster.http.stream_ids import valid_stream_id
from broadcaster.http.submits import read_submit
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.chat_follow import chat_events
from broadcaster.viewers.opening import check_room, stream_response, viewers_response

router = APIRouter()
T = TypeVar("T")


def _parsed(parse: Callable[[Any], T], body: Any) -> T:
    """``parse(body)``; 422 naming what is wrong."""
    try:
        return parse(body)
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None


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
    rules = settings.chat_rules()
    read = await read_submit(request, settings, rules.defaults)
    chat = read.chat
    who = await caller(request)
    check_owner(who, await chats.get(chat.id, whole=False), chat.id)
    once = await idempotent.begin(request, "chat", read.raw)
    if once.replay is not None:
        return await _replayed(request, once.replay)
    try:
        turn = await conversation.submit(
            conversation.Stores(chats, generations, jobs, approvals),
            rules,
            chat,
            read.messages,
            new_id=partial(generation_id, chat.id),
            # A front-end at its connection limit says so before it starts anything.
            room=partial(check_room, request, from_request(request)),
            job=read.job,
            owner=who.owner,
            placed=read.placed,
        )
    except BaseException as exc:
        await once.release()
        if isinstance(exc, RequestInvalid):
            raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None
        if isinstance(exc, conversation.Refusal):
            raise refused(exc) from None
        raise
    settled = {"chat": chat.id, "generation": turn.generation, "base": turn.base}
    await once.settle(settled | {"steered": turn.steered})
    if turn.steered is not None:
        return steered(chat.id, turn.generation, turn.steered, turn.base)
    return await answer(request, chat.id, turn.generation, turn.base)


async def _replayed(request: Request, first: dict[str, Any]) -> Response:
    """A retried submit's answer: the first one's, again (its generation's stream from
    the same point), with nothing started."""
    chat_id, generation, base = first["chat"], first["generation"], int(first["base"])
    current_stream.set(generation)
    if first.get("steered") is not None:
        response = steered(chat_id, generation, first["steered"], base)
    else:
        response = await answer(request, chat_id, generation, base)
    response.headers[idempotent.REPLAYED_HEADER] = "true"
    return response


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
    found = parse_run_id(chat_id)
    if found is not None:
        return await run_answer(request, event_log, found, startIndex or 0)
    record = await _chat(request, chats, chat_id)
    if record is None:
        return Response(status_code=204)
    if startIndex is not None:
        # WorkflowChatTransport resuming by chat id (useChat's resume: true): the chat's
        # latest generation, as a run from its first event.
        return await run_answer(
            request, event_log, (chat_id, record.generation, 0), startIndex, follow=True
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
    return await stream_response(
        request, dataclasses.replace(ask, compact=resume_point is None), headers
    )


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


async def _decision_response(
    approvals: Approvals, generation: str, body: ApprovalBody
) -> JSONResponse:
    try:
        decision: Decision = await approvals.decide(
            generation,
            body.approvalId,
            body.approved,
            body.reason,
            tool_call_id=body.toolCallId,
            input_hash=body.inputHash,
        )
    except Expired:
        raise ApiError(
            409, "approval_expired", f"approval {body.approvalId!r} expired: nothing was decided"
        ) from None
    except Mismatch as exc:
        raise ApiError(409, "approval_mismatch", str(exc)) from None
    except NoSuchApproval:
        raise ApiError(
            404, "not_found", f"generation {generation!r} asks for no approval {body.approvalId!r}"
        ) from None
    except WaitEnded:
        raise ApiError(409, "ended", f"generation {generation!r} has ended") from None
    return JSONResponse(
        {
            "generation_id": generation,
            "approvalId": decision.approval_id,
            "approved": decision.approved,
            "decided": decision.won,
            "resumed": decision.resumed,
        }
    )


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
    body = _parsed(parse_decision, await read_json(request, settings.max_body_bytes))
    if record is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    current_stream.set(record.generation)
    return await _decision_response(approvals, record.generation, body)


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
    body = _parsed(parse_decision, await read_json(request, settings.max_body_bytes))
    current_stream.set(stream_id)
    return await _decision_response(approvals, stream_id, body)


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
