"""``/v1/agui``: generations and chats as AG-UI, and CopilotKit's v2 runtime routes: a
generation's events, ``info``, an agent's ``run`` (a chat submit, or a ``resume`` that
decides approvals), ``connect`` (the thread's latest run) and ``stop``, and AG-UI events
published to a stream (stored as the UI message chunks every reader gets). Access is
that of the matching stream and chat routes; the mapping is ``broadcaster.agui``'s, a
run's turn ``chat/conversation.py``'s. docs/agui.md.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.agui.inbound import AgUiInvalid, map_events, sse_events
from broadcaster.agui.producers import Producers
from broadcaster.agui.runs import DEFAULT_AGENT, RunInput, decisions
from broadcaster.chat import conversation
from broadcaster.core import names
from broadcaster.core.eventlog import EventLog
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.request import PROVIDERS, RequestInvalid
from broadcaster.http import openapi, openapi_requests
from broadcaster.http.access import (
    check_chat,
    check_viewer,
    presented_key,
    producer,
    submit_rate,
)
from broadcaster.http.agui_answers import agui_response, history_for
from broadcaster.http.bodies import parse_json, read_bytes
from broadcaster.http.budgets import with_user, within_budget
from broadcaster.http.chat_answers import answered_by, stop_answer
from broadcaster.http.errors import ApiError, refused
from broadcaster.http.event_bodies import AgUiPublishBody, events_in
from broadcaster.http.feeds import append_feed
from broadcaster.http.resources import (
    AdmittedChatsDep,
    ApprovalsDep,
    ChatsDep,
    EventLogDep,
    GenerationsDep,
    JobsDep,
    MetricsDep,
    SettingsDep,
)
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import api_router, new_stream_id, producible, valid_stream_id
from broadcaster.http.submits import prepare_run, read_run
from broadcaster.viewers.ask import from_request, resume_of
from broadcaster.viewers.opening import check_room

router = api_router()

CAPABILITIES = {"transport": {"streaming": True, "resumable": True}}
"""``resumable``: every event carries an ``id:``; ``Last-Event-ID`` continues after it."""


async def _thread_of(event_log: EventLog, stream_id: str) -> str:
    """A generation's AG-UI thread: its chat, else itself."""
    meta = await event_log.meta(stream_id)
    request_json = json.loads(meta.get("request") or "{}") if meta else {}
    chat = request_json.get("chat_id") if isinstance(request_json, dict) else None
    return chat if isinstance(chat, str) else stream_id


@router.get(
    "/v1/agui/generations/{stream_id}/events",
    response_class=Response,
    responses={
        **openapi.sse("the generation's AG-UI events"),
        204: {"description": "the client has seen the end"},
        **openapi.errors(400, 401, 403, 404, 409, 429, 503),
    },
)
async def generation_events(stream_id: str, request: Request, event_log: EventLogDep) -> Response:
    """The generation's events as AG-UI (``RUN_STARTED`` to ``RUN_FINISHED``), each with
    an ``id:``; after ``Last-Event-ID``, a prelude re-opens what was open there."""
    if not names.is_stream_id(stream_id):
        raise ApiError(404, "not_found", f"no such stream: ids match {names.STREAM_ID_PATTERN}")
    await check_viewer(request, stream_id)
    current_stream.set(stream_id)
    thread = await _thread_of(event_log, stream_id)
    cursor = resume_of(request, query=False)
    return await agui_response(request, stream_id, thread, cursor, stop_at_wait=False)


def _agents(settings: Settings) -> list[str]:
    served = settings.served_providers()
    return sorted(served if served is not None else PROVIDERS)


def _check_agent(agent_id: str, settings: Settings) -> None:
    if agent_id != DEFAULT_AGENT and agent_id not in _agents(settings):
        raise ApiError(404, "not_found", f"no agent {agent_id[:80]!r}: see GET /v1/agui/info")


@router.get("/v1/agui/info")
async def info(settings: SettingsDep) -> JSONResponse:
    """The agents a run may name (``default`` and each provider served) and the
    transport's capabilities (``resumable``)."""
    agents: dict[str, Any] = {
        DEFAULT_AGENT: {
            "description": f"the deployment's default provider ({settings.default_provider})",
            "capabilities": CAPABILITIES,
        }
    }
    for name in _agents(settings):
        agents[name] = {"description": f"a chat answered by {name}", "capabilities": CAPABILITIES}
    return JSONResponse({"version": "1.0.0", "agents": agents, "capabilities": CAPABILITIES})


RUN_BODY = openapi_requests.body(RunInput)
"""``RunAgentInput``, as the run and connect routes read it."""


@router.post(
    "/v1/agui/agent/{agent_id}/run",
    response_class=Response,
    openapi_extra=RUN_BODY,
    responses={
        **openapi.sse("the run's AG-UI events"),
        **openapi.errors(401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def run(
    agent_id: str,
    request: Request,
    *,
    chats: ChatsDep,
    admitted: AdmittedChatsDep,
    event_log: EventLogDep,
    generations: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    approvals: ApprovalsDep,
) -> Response:
    """A chat submit (the chat's ``multitask`` rules); with ``resume``, the decisions on
    the approvals the chat's answer waits on. Answered with the run's AG-UI stream."""
    _check_agent(agent_id, settings)
    given, size = await read_run(request, settings, "submit")
    thread = given.threadId
    await check_chat(request, thread, "submit")
    await submit_rate(request, await presented_key(request))
    user = await within_budget(request)
    rules = settings.chat_rules()
    try:
        decided = decisions(given)
        if decided:
            waited, base = await conversation.decide(chats, approvals, thread, decided)
            current_stream.set(waited)
            history = await history_for(request, admitted, thread, waited)
            return await agui_response(
                request, waited, thread, None, base=base, stop_at_wait=True, history=history
            )
        prepared = await prepare_run(request, given, agent_id, rules.defaults, size)
        turn = await conversation.submit(
            conversation.Stores(chats, generations, jobs, approvals),
            rules,
            prepared.chat,
            prepared.messages,
            new_id=new_stream_id,
            room=partial(check_room, request, from_request(request)),
            job=None if prepared.job is None else with_user(prepared.job, user),
        )
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None
    except conversation.Refusal as exc:
        raise refused(exc) from None
    current_stream.set(turn.generation)
    history = await history_for(request, admitted, thread, turn.generation)
    # A steer goes on in the running answer, after the steering message: the run shows it.
    return await agui_response(
        request, turn.generation, thread, None, base=turn.base, stop_at_wait=True, history=history
    )


@router.post(
    "/v1/agui/agent/{agent_id}/connect",
    response_class=Response,
    openapi_extra=RUN_BODY,
    responses={
        **openapi.sse("the thread's latest run as AG-UI events (empty: no run yet)"),
        204: {"description": "the client has seen the run's end (Last-Event-ID)"},
        **openapi.errors(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def connect(
    agent_id: str, request: Request, chats: ChatsDep, settings: SettingsDep
) -> Response:
    """The thread's latest run from its start (or after ``Last-Event-ID``), then live,
    ending where the run waits for a person."""
    _check_agent(agent_id, settings)
    given, _ = await read_run(request, settings, "read")
    await check_chat(request, given.threadId, "read")
    record = await chats.get(given.threadId)  # whole: the snapshot sends its messages
    if record is None:  # an empty stream: CopilotKit waits on a 204 for ever
        return Response(b"", media_type="text/event-stream", headers={"cache-control": "no-store"})
    current_stream.set(record.generation)
    cursor = resume_of(request, query=False)
    return await agui_response(
        request,
        record.generation,
        given.threadId,
        cursor,
        stop_at_wait=True,
        history=record.messages,
    )


@router.post(
    "/v1/agui/agent/{agent_id}/stop/{thread_id}",
    status_code=202,
    responses=openapi.errors(401, 403, 404, 409, 429),
)
async def stop(
    agent_id: str,
    thread_id: str,
    request: Request,
    *,
    chats: ChatsDep,
    event_log: EventLogDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Stop the thread's running answer: its run ends with ``RUN_FINISHED`` (outcome
    ``cancelled``). 404 unless the agent exists and, when it is not ``default``, is the
    one answering. The body, if any, is not read."""
    if not names.is_chat_id(thread_id):
        raise ApiError(404, "not_found", f"no such thread: ids match {names.STREAM_ID_PATTERN}")
    _check_agent(agent_id, settings)
    await check_chat(request, thread_id, "stop")
    await answered_by(chats, event_log, thread_id, agent_id)
    generation = await stop_answer(chats, event_log, thread_id, chat="thread", answer="answer")
    body = {"threadId": thread_id, "runId": generation, "status": "cancelled"}
    return JSONResponse(body, status_code=202)


def _producers(request: Request) -> Producers:
    """The front-end's AG-UI publish state (made on first use)."""
    found: Producers | None = getattr(request.app.state, "agui_producers", None)
    if found is None:
        found = request.app.state.agui_producers = Producers()
    return found


PUBLISH_TRIES = 3
"""Appends tried when another producer appends to the stream between a batch's fold and
its append (each refolds from the log)."""

SSE_TYPE = "text/event-stream"


def _events(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """A publish body's AG-UI events: SSE text (``data:`` lines, as an AG-UI endpoint
    answers), or JSON (one event, or a list)."""
    try:
        if content_type.split(";", 1)[0].strip().lower() == SSE_TYPE:
            return sse_events(body)
    except (AgUiInvalid, UnicodeDecodeError) as exc:
        raise ApiError(422, "invalid_event", f"not AG-UI SSE: {exc}"[:300]) from None
    return events_in(AgUiPublishBody, parse_json(body))


@router.post(
    "/v1/agui/streams/{stream_id}/events",
    status_code=201,
    openapi_extra=openapi_requests.body(AgUiPublishBody),
    responses=openapi.ok(201, openapi.Published, "mapped and appended")
    | openapi.errors(401, 403, 404, 409, 413, 422, 429),
    dependencies=[Depends(valid_stream_id), *producer("publish"), Depends(producible)],
)
async def publish(
    stream_id: str,
    request: Request,
    *,
    event_log: EventLogDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> JSONResponse:
    """Publish AG-UI events (an agent that speaks AG-UI): each is mapped to the UI
    message chunks that every reader of the stream gets, appended atomically per request."""
    body = await read_bytes(request, settings.max_body_bytes)
    events = _events(body, request.headers.get("content-type", ""))
    producers = _producers(request)
    for _ in range(PUBLISH_TRIES):
        ((seq, _tag),) = await event_log.heads([stream_id])
        mapper = await producers.mapper_at(event_log, stream_id, seq)
        if mapper.state.ended:
            raise ApiError(409, "ended", "the stream's run has ended", last_event_id=seq)
        try:
            chunks = map_events(mapper, events)
        except AgUiInvalid as exc:
            raise ApiError(422, "invalid_event", str(exc)[:300]) from None
        if not chunks:
            return JSONResponse({"last_event_id": seq, "appended": 0}, status_code=201)
        try:
            last = await append_feed(event_log, stream_id, chunks, seq)
        except ApiError as exc:
            if exc.code != "conflict":
                raise
            continue
        producers.keep(stream_id, last, mapper)
        metrics.appended.inc(len(chunks))
        return JSONResponse({"last_event_id": last, "appended": len(chunks)}, status_code=201)
    raise ApiError(409, "conflict", "other producers kept appending to this stream; try again")
