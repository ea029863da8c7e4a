"""``/v1/chat``: the AI SDK's chat transport (``DefaultChatTransport`` with ``api`` set to
``{base}/v1/chat``), spoken directly: a submit starts a generation and answers with its
stream, a resume streams the running one again, a stop cancels it, and the messages route
gives the chat so far. A chat token (``POST /v1/chat/{id}/tokens``) opens these routes
for one chat and nothing else.

A chat is a record (``chat/records.py``) naming its latest generation; the generations
themselves are ordinary ones, started and streamed by the same code as
``POST /v1/generations`` and ``GET /v1/streams/{id}/events``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.auth import credentials
from broadcaster.chat.approvals import Approvals, Decision, NoSuchApproval, WaitEnded
from broadcaster.chat.convert import (
    GENERATION_FIELDS,
    ChatBody,
    approval_responses,
    chunk_window,
    parse_body,
    parse_run_id,
    response_message_id,
    run_id,
    to_request,
)
from broadcaster.chat.records import ChatRecord, Chats
from broadcaster.chat.ui_message import ChatMessages
from broadcaster.core import names
from broadcaster.core.eventlog import UNCLAIMED, AppendRefused, EventLog
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.request import RequestInvalid
from broadcaster.http import openapi
from broadcaster.http.access import AccessDep, check_chat, producer
from broadcaster.http.bodies import read_json, strict_json
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import (
    ApprovalsDep,
    ChatsDep,
    EventLogDep,
    GenerationsDep,
    HubDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
    get_event_log,
)
from broadcaster.http.routes.generations import abort, admit, create
from broadcaster.http.routes.streams import (
    SSE_HEADERS,
    check_room,
    stream_response,
    viewers_response,
)
from broadcaster.http.routes.tokens import minted
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id, valid_stream_id

router = APIRouter()

GENERATION_HEADER = "x-generation-id"
"""The answer's header naming the generation, for ``GET /v1/generations/{id}``."""

CHAT_HEADER = "x-chat-id"
"""The submit's answer: the chat's id (the one the server assigned, if the body had none)."""

RUN_HEADER = "x-workflow-run-id"
"""The submit's answer: ``<chat>~<generation>~<base>``, where
``GET /v1/chat/{runId}/stream?startIndex=N`` resumes this very answer at its chunk N
(``WorkflowChatTransport``)."""

TAIL_HEADER = "x-workflow-stream-tail-index"
"""A run's stream: the index of the run's last chunk so far (-1: none yet)."""

LONE_FINISH = b'data: {"type":"finish"}\n\ndata: [DONE]\n\n'
"""What a run's reconnect gets once it holds the whole answer, if that ended with
``abort`` or ``error``: ``WorkflowChatTransport`` reconnects until it sees a ``finish``."""


def check_chat_id(chat_id: str) -> None:
    """404 unless ``chat_id`` is a chat id (the grammar of stream ids)."""
    if not names.is_chat_id(chat_id):
        raise ApiError(404, "not_found", f"no such chat: ids match {names.STREAM_ID_PATTERN}")


async def valid_chat_id(chat_id: str) -> None:
    """The dependency form of ``check_chat_id``: before any access check."""
    check_chat_id(chat_id)


def _body_id(body: Any) -> dict[str, Any]:
    """The submit's body with its chat id in ``id`` (``DefaultChatTransport`` sends
    ``id``; ``WorkflowChatTransport`` sends none unless the app puts ``id`` or ``chatId``
    in its ``body``: the server then assigns one), before the rest is checked: access
    first."""
    if not isinstance(body, dict):
        raise ApiError(
            422,
            "invalid_request",
            "the body must be a JSON object",
            details=[{"loc": [], "msg": "not an object"}],
        )
    found: dict[str, Any] = dict(body)
    if "chatId" in found:
        given = found.pop("chatId")
        found.setdefault("id", given)
    if found.get("id") is None:
        found["id"] = new_stream_id()
    chat_id = found["id"]
    if not names.is_chat_id(chat_id):
        raise ApiError(
            422,
            "invalid_request",
            f"id: the chat id must be a string matching {names.STREAM_ID_PATTERN}",
            details=[{"loc": ["id"], "msg": "not a chat id"}],
        )
    return found


def _parsed(body: dict[str, Any]) -> ChatBody:
    """The checked chat body; 422 naming what is wrong."""
    try:
        return parse_body(body)
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None


def _converted(chat: ChatBody, settings: Settings) -> dict[str, Any]:
    """The generation request a chat body converts to; 422 naming what is wrong."""
    try:
        return to_request(chat, settings.request_defaults())
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None


async def _decided(
    request: Request,
    chats: Chats,
    approvals: Approvals,
    chat_id: str,
    responses: list[tuple[str, bool, str | None]],
) -> Response:
    """Record the decisions a submit carries (``approval-responded`` tool parts) and answer
    with the chat's answer from where it waited: the first decision on an approval wins
    (a tab that lost sees what the winner decided)."""
    record = await chats.get(chat_id)
    generation = record.generation if record else ""
    decided = []
    for approval_id, approved, reason in responses if record else []:
        try:
            decided.append(await approvals.decide(generation, approval_id, approved, reason))
        except NoSuchApproval:
            continue
        except WaitEnded:
            raise ApiError(
                409, "ended", f"chat {chat_id!r}: the answer waiting for this decision has ended"
            ) from None
    if record is None or not decided:
        raise ApiError(
            409,
            "approval_unknown",
            f"chat {chat_id!r}: its answer waits on none of the approvals this request decides",
        )
    current_stream.set(generation)
    return await answer(request, chat_id, generation, max(d.wait_seq for d in decided))


async def _make_way(
    event_log: EventLog, chat: ChatBody, record: ChatRecord | None, default: str
) -> str | None:
    """A chat runs one generation at a time. While one runs (or waits for a person), the
    submit's ``multitask`` (else the deployment's) decides: ``reject`` (409), ``interrupt``
    (the running one ends with ``abort``, reason ``interrupted``; a regenerate always
    does this, reason ``cancelled``), or ``enqueue``/``steer``, returned for the caller.
    None: go ahead."""
    if record is None:
        return None
    info = await event_log.info(record.generation)
    if info is None or info.ended:
        return None
    regenerate = chat.trigger == "regenerate-message"
    strategy = "interrupt" if regenerate else (chat.multitask or default)
    if strategy in ("enqueue", "steer") and chat.messages[-1].role == "user":
        return strategy
    if strategy != "interrupt":
        raise ApiError(
            409,
            "chat_busy",
            f"chat {chat.id!r} is generating; stop it (POST /v1/chat/{chat.id}/stop), "
            "regenerate, or send with multitask",
            generation_id=record.generation,
        )
    reason = "cancelled" if regenerate else "interrupted"
    with contextlib.suppress(AppendRefused):  # ended meanwhile: nothing left to cancel
        await event_log.append(
            record.generation,
            [{"type": "abort", "reason": reason}],
            kind="generation",
            meta={"error": ""},
        )
    return None


async def _enqueue(
    request: Request,
    *,
    chats: Chats,
    generations: Generations,
    settings: Settings,
    chat: ChatBody,
    job: dict[str, Any],
) -> Response:
    """``enqueue``: the message's generation is made now, and its stream is the answer
    (a transient ``data-queued`` first, then nothing until the pump starts it)."""
    generation = new_stream_id()
    job["ui_message_id"] = generation
    job["chat_id"] = chat.id
    await create(generations, generation, job)
    entry = {
        "generation": generation,
        "message": chat.messages[-1].model_dump(),
        "fields": _fields(chat),
    }
    position = await chats.enqueue(chat.id, entry, settings.chat_queue_max)
    if not position:
        await generations.discard(generation)
        raise ApiError(
            409,
            "chat_queue_full",
            f"chat {chat.id!r} already has {settings.chat_queue_max} messages waiting",
        )
    notice = {"type": "data-queued", "data": {"position": position}, "transient": True}
    await generations.log.append(generation, [notice], kind="generation", owner=UNCLAIMED)
    return await answer(request, chat.id, generation, 0)


def _fields(chat: ChatBody) -> dict[str, Any]:
    """The body's generation fields, for a message that starts later."""
    return {k: v for k, v in (chat.model_extra or {}).items() if k in GENERATION_FIELDS}


STEERED = "data-steered"


async def _steer(chats: Chats, event_log: EventLog, chat: ChatBody, record: ChatRecord) -> Response:
    """``steer``: the message goes to the running generation's next step. The answer is
    short: a transient ``data-steered`` and a ``finish`` (no assistant message of its
    own: the running answer, which every tab follows, shows the message as a
    ``data-steer`` part where it entered, and goes on)."""
    last = chat.messages[-1]
    text = "".join(
        str((p.model_extra or {}).get("text", "")) for p in last.parts if p.type == "text"
    )
    message = {"id": last.id, "text": text, "message": last.model_dump(), "fields": _fields(chat)}
    await chats.steer(chat.id, record.generation, message)
    info = await event_log.info(record.generation)
    notice = {"generationId": record.generation, "messageId": last.id}
    body = (
        f"data: {json.dumps({'type': STEERED, 'data': notice, 'transient': True})}\n\n"
        'data: {"type":"finish"}\n\ndata: [DONE]\n\n'
    )
    headers = _answer_headers(chat.id, record.generation, info.last_seq if info else 0)
    return Response(body, media_type="text/event-stream", headers=SSE_HEADERS | headers)


@router.post(
    "/v1/chat",
    response_class=Response,
    openapi_extra=openapi.CHAT_BODY,
    responses={
        **openapi.sse("the generation's stream", openapi.SUBMIT_HEADERS),
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
    approvals: ApprovalsDep,
) -> Response:
    """Start the chat's next generation and answer with its stream; or, for a request
    that carries decisions on the tool calls the answer waits on, record them and answer
    with the rest of that answer."""
    body = _body_id(await read_json(request, settings.chat_max_body_bytes))
    await check_chat(request, body["id"], "generate")
    strict_json(body)
    chat = _parsed(body)
    responses = approval_responses(chat)
    if responses:
        # addToolApprovalResponse's request: a decision for the waiting answer, which
        # goes on; this request's answer continues the same message from the wait.
        return await _decided(request, chats, approvals, chat.id, responses)
    job = _converted(chat, settings)
    await admit(jobs, settings, job["provider"])
    generation = new_stream_id()
    # A front-end at its connection limit says so before it starts anything.
    check_room(request, hub, settings, ())
    record = await chats.get(chat.id)
    way = await _make_way(event_log, chat, record, settings.chat_multitask)
    if way == "enqueue":
        return await _enqueue(
            request, chats=chats, generations=generations, settings=settings, chat=chat, job=job
        )
    if way == "steer" and record is not None:
        return await _steer(chats, event_log, chat, record)
    job["ui_message_id"] = response_message_id(chat.messages, generation)
    job["chat_id"] = chat.id  # a run id names it: its stream checks it is this chat's
    # Created before the chat names it, queued after: a submit that reads the record
    # meanwhile finds a generation that runs, never one that does not exist yet.
    await create(generations, generation, job)
    new = ChatRecord(generation, job["ui_message_id"], body["messages"])
    if not await chats.submit(chat.id, record.generation if record else None, new):
        await generations.discard(generation)
        raise ApiError(409, "chat_busy", f"another request started chat {chat.id!r} meanwhile")
    await jobs.enqueue(generation, job["provider"])
    return await answer(request, chat.id, generation, 0)


def _answer_headers(chat_id: str, generation: str, base: int) -> dict[str, str]:
    return {
        GENERATION_HEADER: generation,
        CHAT_HEADER: chat_id,
        RUN_HEADER: run_id(chat_id, generation, base),
    }


async def answer(request: Request, chat_id: str, generation: str, base: int) -> Response:
    """A submit's answer: ``generation``'s stream after its event ``base``, ending where
    the generation suspends to wait for a person (``until_waiting``)."""
    return await stream_response(
        request,
        generation,
        str(base) if base else None,
        _answer_headers(chat_id, generation, base),
        body_filter=lambda chunks: until_waiting(request, generation, chunks),
    )


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
        **openapi.sse("the running generation", openapi.RESUME_HEADERS),
        204: {"description": "the chat has no running generation"},
        **openapi.errors(400, 401, 403, 404, 409, 429, 503),
    },
    openapi_extra=openapi.CHAT_LAST_EVENT_ID,
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
        return await _run_stream(request, event_log, found, startIndex or 0)
    record = await _chat(request, chats, chat_id)
    if record is None:
        return Response(status_code=204)
    if startIndex is not None:
        # WorkflowChatTransport resuming by chat id (useChat's resume: true): the chat's
        # latest generation, as a run from its first event.
        return await _run_stream(
            request, event_log, (chat_id, record.generation, 0), startIndex, follow=True
        )
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


async def _run_stream(
    request: Request,
    event_log: EventLog,
    run: tuple[str, str, int],
    start: int,
    *,
    follow: bool = False,
) -> Response:
    """One answer's stream (a run id's), from its chunk ``start``: exact, never compacted,
    no presence notices, so that chunk ``i`` is always event ``base + i + 1``. A run's
    reconnect ends where its POST's answer would, at a wait for a person; one that
    ``follow``s the chat (a tab's resume) stays through it, as the chat's resume does."""
    chat_id, generation, base = run
    await check_chat(request, chat_id, None)
    current_stream.set(generation)
    meta = await event_log.meta(generation)
    request_json = json.loads(meta.get("request") or "{}") if meta else {}
    if meta is None or request_json.get("chat_id") != chat_id:
        raise ApiError(
            404, "not_found", f"no run {chat_id}~{generation}~{base} (unknown or expired)"
        )
    last_seq = int(meta.get("seq") or 0)
    after = chunk_window(base, last_seq, start)
    headers = _answer_headers(chat_id, generation, base) | {TAIL_HEADER: str(last_seq - base - 1)}
    if meta.get("ended") and after == last_seq:
        # The client holds the whole answer; one that ended without ``finish`` gets one,
        # so that the transport stops reconnecting.
        lone = b"" if meta["ended"] == "finish" else LONE_FINISH
        return Response(lone, media_type="text/event-stream", headers=SSE_HEADERS | headers)
    return await stream_response(
        request,
        generation,
        str(after),
        headers,
        compact=False,
        presence=False,
        body_filter=lambda chunks: until_waiting(
            request, generation, chunks, finish_ends=True, stop_at_wait=not follow
        ),
    )


_APPROVAL_FRAME = b"\nevent: tool-approval-request\n"
_LAST_ID = re.compile(rb"(?:^|\n)id: (\d+)\.[0-9a-f]*\n(?![\s\S]*\nid: )")
SUSPENDED_FINISH = b'data: {"type":"finish","finishReason":"tool-calls"}\n\ndata: [DONE]\n\n'
"""Where an answer ends when its generation waits for a person: the AI SDK's client is
then ready, and its next request (``addToolApprovalResponse``) carries the decision."""
_ENDED_FRAME = re.compile(rb"\nevent: (abort|error)\n")


async def until_waiting(
    request: Request,
    generation: str,
    chunks: AsyncIterator[bytes],
    *,
    finish_ends: bool = False,
    stop_at_wait: bool = True,
) -> AsyncIterator[bytes]:
    """A submit's answer (and a run's stream): the generation's chunks, ending with a
    ``finish`` (``tool-calls``) once the generation is waiting for a person and this
    answer has shown the requests it waits on. ``finish_ends``: an end by ``abort`` or
    ``error`` gets a ``finish`` before its ``[DONE]`` (what ``WorkflowChatTransport``
    waits for)."""
    event_log = await get_event_log(request)
    ended_badly = False
    try:
        async for chunk in chunks:
            if finish_ends and not ended_badly and _ENDED_FRAME.search(chunk):
                ended_badly = True
            out = chunk
            if ended_badly and chunk.endswith(b"data: [DONE]\n\n"):
                out = chunk[: -len(b"data: [DONE]\n\n")] + LONE_FINISH
            yield out
            if stop_at_wait and _APPROVAL_FRAME in chunk:
                last = _LAST_ID.search(chunk)
                seen = int(last.group(1)) if last else 0
                meta = await event_log.meta(generation)
                if (
                    meta
                    and meta.get("status") == "waiting"
                    and int(meta.get("wait_seq") or 0) <= seen
                ):
                    yield SUSPENDED_FINISH
                    return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


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


class ApprovalBody(BaseModel):
    """A decision on a tool call a generation waits on."""

    model_config = ConfigDict(extra="forbid")
    approvalId: str = Field(min_length=1, max_length=256)
    approved: bool
    reason: str | None = Field(None, max_length=4096)


def _approval_body(body: Any) -> ApprovalBody:
    try:
        return ApprovalBody.model_validate(body)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(422, "invalid_request", "invalid decision", details=details) from None


async def _decision_response(
    approvals: Approvals, generation: str, body: ApprovalBody
) -> JSONResponse:
    try:
        decision: Decision = await approvals.decide(
            generation, body.approvalId, body.approved, body.reason
        )
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
    openapi_extra=openapi.APPROVAL_BODY,
    responses=openapi.ok(200, openapi.Decided, "the decision in force")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
)
async def decide_in_chat(
    chat_id: str, request: Request, chats: ChatsDep, approvals: ApprovalsDep, settings: SettingsDep
) -> JSONResponse:
    """Decide on a tool call the chat's answer waits on; the first decision wins."""
    check_chat_id(chat_id)
    await check_chat(request, chat_id, "generate")
    body = _approval_body(await read_json(request, settings.max_body_bytes))
    record = await chats.get(chat_id)
    if record is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    current_stream.set(record.generation)
    return await _decision_response(approvals, record.generation, body)


@router.post(
    "/v1/generations/{stream_id}/approvals",
    openapi_extra=openapi.APPROVAL_BODY,
    responses=openapi.ok(200, openapi.Decided, "the decision in force")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("generate")],
)
async def decide_in_generation(
    stream_id: str, request: Request, approvals: ApprovalsDep, settings: SettingsDep
) -> JSONResponse:
    """Decide on a tool call a generation waits on; the first decision wins."""
    body = _approval_body(await read_json(request, settings.max_body_bytes))
    current_stream.set(stream_id)
    return await _decision_response(approvals, stream_id, body)


@router.get(
    "/v1/chat/{chat_id}/messages",
    responses=openapi.ok(200, openapi.ChatMessages, "the chat's UI messages so far")
    | openapi.errors(401, 403, 404),
)
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
    queued = [
        {"generation_id": e["generation"], "message": e["message"]}
        for e in await chats.queued(chat_id)
    ]
    return JSONResponse(
        {
            "id": chat_id,
            "generation_id": record.generation,
            "status": meta.get("status", "queued"),
            "messages": folding.result(),
            "queued": queued,
        }
    )


@router.post(
    "/v1/chat/{chat_id}/tokens",
    openapi_extra=openapi.TOKEN_BODY,
    responses=openapi.ok(200, openapi.ChatToken, "a chat token")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_chat_id), *producer("tokens")],
)
async def mint_chat_token(
    chat_id: str, request: Request, settings: SettingsDep, access: AccessDep
) -> JSONResponse:
    """A chat token for one chat, for an app's backend to hand to its browser."""
    return await minted(
        request, settings, access, credentials.mint_chat_token, chat_id, name="chat_token"
    )
