"""Reading what starts a chat's answer: a ``POST /v1/chat`` body and an AG-UI run's
``RunAgentInput``. The credential is checked before a byte of the body is read; the body
is bounded as it streams in (bytes and JSON values, ``bodies.read_bytes``), its messages
counted before any is checked, the chat it names checked against the credential, and
what is left (the messages checked, the generation request made) runs off the event
loop when the body is large (``offloop.py``). A result the body claims for a tool call
is taken from the chat's record where the record has one (``convert.from_record``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from fastapi import Request

from broadcaster.agui.runs import RunInput, chat_body, parse_input
from broadcaster.auth.tokens import ChatUse
from broadcaster.chat.convert import (
    RECORDED_TYPES,
    ChatBody,
    NotRecorded,
    TooManyMessages,
    claimed_results,
    convert,
    count_messages,
    from_record,
    parse_body,
    with_chat_id,
)
from broadcaster.chat.placing import Placed
from broadcaster.generations.chat_turns import naming
from broadcaster.generations.request import Defaults, RequestInvalid
from broadcaster.http.access import check_chat, credential_first, presented_key, submit_rate
from broadcaster.http.bodies import offloop, read_json_sized
from broadcaster.http.budgets import with_user, within_budget
from broadcaster.http.errors import ApiError
from broadcaster.http.kept_history import placed_all, sends_one, with_history
from broadcaster.http.offloop import INLINE_BYTES
from broadcaster.http.resources import get_chats, get_event_log
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submit:
    """A submit's body as read: the JSON as sent (``raw``, what an ``Idempotency-Key``
    binds), with its chat id (``body``), checked (``chat``), its generation request
    (``job``; None for a submit that decides on tool calls), and its UI messages as the
    chat's record is to keep them (``messages``)."""

    raw: Any
    body: dict[str, Any]
    chat: ChatBody
    job: dict[str, Any] | None
    messages: list[dict[str, Any]]
    placed: Placed | None = None
    """Where they go in the history the server keeps (``http/kept_history.py``)."""


def parsed(parse: Callable[[Any], T], body: Any) -> T:
    """``parse(body)``; 422 naming what is wrong."""
    try:
        return parse(body)
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None


def counted(body: Any, limit: int) -> None:
    """422 ``too_many_messages`` for a body of more than ``limit`` messages, before any of
    them is checked."""
    if not isinstance(body, dict):
        return
    try:
        count_messages(body, limit)
    except TooManyMessages as exc:
        raise ApiError(422, "too_many_messages", exc.message, details=exc.details) from None


async def read_submit(request: Request, settings: Settings, defaults: Defaults) -> Submit:
    """A ``POST /v1/chat`` body, read as the module says; the chat it names opened for
    ``submit`` (``access.check_chat``), within its user's rate and budget (its request
    names the user: ``budgets.within_budget``)."""
    await credential_first(request, "submit")
    raw, size = await read_json_sized(request, settings.chat_max_body_bytes)
    body = parsed(partial(with_chat_id, new_id=new_stream_id), raw)
    one = sends_one(body)
    if not one:  # the history from the record is the deployment's, not the request's
        counted(body, settings.chat_max_messages)
    await check_chat(request, body["id"], "submit")
    await submit_rate(request, await presented_key(request))
    user = await within_budget(request)
    placed = None
    if one:
        copy = settings.chat_job_history == "copy"
        body, placed = await with_history(request, body, whole=copy)
        if placed.whole:  # the chat read whole from the record: not the request's size
            size = max(size, INLINE_BYTES)
    pool = offloop(request)
    chat = await pool.run_sized(size, parsed, parse_body, body)
    job = await _converted(request, chat, defaults, size)
    if job is not None and placed is not None and not placed.whole:
        job = naming(job, chat.id, chat.options.get("system"))
    job = None if job is None else with_user(job, user)
    # The record keeps the messages as sent, but with the results the record gave them.
    dumped = await pool.run_sized(size, _dumped, chat) if claimed_results(chat) else None
    messages = body["messages"] if dumped is None else dumped
    if one and dumped is not None and placed is not None:
        placed = dataclasses.replace(placed, push=[*placed.push[:-1], dumped[-1]])
    elif not one and job is not None:
        refuse = settings.chat_client_history == "refuse"
        placed = await placed_all(request, chat.id, messages, refuse=refuse)
    return Submit(raw, body, chat, job, messages, placed)


async def _converted(
    request: Request, chat: ChatBody, defaults: Defaults, size: int
) -> dict[str, Any] | None:
    """``chat``'s generation request (``convert.convert``), its tool results first taken
    from the chat's record (409 ``not_recorded`` for a result the record says the server
    is to make)."""
    claimed = claimed_results(chat)
    if claimed:
        recorded = await _recorded(request, chat.id, claimed)
        try:
            from_record(chat, recorded)
        except NotRecorded as exc:
            raise ApiError(409, "not_recorded", exc.message, details=exc.details) from None
    work = partial(convert, defaults=defaults)
    return await offloop(request).run_sized(size, parsed, work, chat)


async def _recorded(request: Request, chat_id: str, calls: set[str]) -> dict[str, dict[str, Any]]:
    """The last approval or result chunk of each of ``calls`` in the chat's latest
    answer (the events its worker wrote), by call id."""
    record = await (await get_chats(request)).get(chat_id, whole=False)
    found: dict[str, dict[str, Any]] = {}
    if record is None:
        return found
    async for page in (await get_event_log(request)).read_after(record.generation, 0):
        for event in page:
            if event.type in RECORDED_TYPES:
                data = event.json()
                if data.get("toolCallId") in calls:
                    found[str(data["toolCallId"])] = data
    return found


async def read_run(request: Request, settings: Settings, use: ChatUse) -> tuple[RunInput, int]:
    """An AG-UI run's (or connect's) ``RunAgentInput``, read as the module says, and its
    size in bytes; its thread is the caller's to check (``access.check_chat``)."""
    await credential_first(request, use)
    raw, size = await read_json_sized(request, settings.chat_max_body_bytes)
    counted(raw, settings.chat_max_messages)
    return await offloop(request).run_sized(size, parsed, parse_input, raw), size


@dataclass(frozen=True, slots=True)
class Run:
    """A run's turn as a chat submit: its chat body checked, its generation request, and
    its UI messages as the chat's record keeps them."""

    chat: ChatBody
    job: dict[str, Any] | None
    messages: list[dict[str, Any]]


def _run_chat(given: RunInput, agent_id: str) -> ChatBody:
    return parsed(parse_body, chat_body(given, agent_id))


def _dumped(chat: ChatBody) -> list[dict[str, Any]]:
    return [m.model_dump() for m in chat.messages]


async def prepare_run(
    request: Request, given: RunInput, agent_id: str, defaults: Defaults, size: int
) -> Run:
    """A run as a chat submit (``agui.runs.chat_body``), checked and converted off the
    event loop when its body was large, its tool results taken from the record."""
    pool = offloop(request)
    chat = await pool.run_sized(size, _run_chat, given, agent_id)
    job = await _converted(request, chat, defaults, size)
    return Run(chat, job, await pool.run_sized(size, _dumped, chat))
