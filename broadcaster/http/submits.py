"""Reading what starts a chat's answer: a ``POST /v1/chat`` body and an AG-UI run's
``RunAgentInput``. The credential is checked before a byte of the body is read; the body
is bounded as it streams in (bytes and JSON values, ``bodies.read_bytes``), its messages
counted before any is checked, the chat it names checked against the credential, and
what is left (the messages checked, the generation request made) runs off the event
loop when the body is large (``offloop.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from fastapi import Request

from broadcaster.agui.runs import RunInput, chat_body, parse_input
from broadcaster.auth.tokens import ChatUse
from broadcaster.chat.convert import (
    ChatBody,
    TooManyMessages,
    count_messages,
    prepare,
    with_chat_id,
)
from broadcaster.generations.request import Defaults, RequestInvalid
from broadcaster.http.access import check_chat, credential_first
from broadcaster.http.bodies import offloop, read_json_sized
from broadcaster.http.errors import ApiError
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submit:
    """A submit's body as read: the JSON as sent (``raw``, what an ``Idempotency-Key``
    binds), with its chat id (``body``), checked (``chat``), and its generation request
    (``job``; None for a submit that decides on tool calls)."""

    raw: Any
    body: dict[str, Any]
    chat: ChatBody
    job: dict[str, Any] | None


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
    ``submit`` (``access.check_chat``)."""
    await credential_first(request, "submit")
    raw, size = await read_json_sized(request, settings.chat_max_body_bytes)
    body = parsed(partial(with_chat_id, new_id=new_stream_id), raw)
    counted(body, settings.chat_max_messages)
    await check_chat(request, body["id"], "submit")
    work = partial(prepare, defaults=defaults)
    chat, job = await offloop(request).run_sized(size, parsed, work, body)
    return Submit(raw, body, chat, job)


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


def _run(given: RunInput, agent_id: str, defaults: Defaults) -> Run:
    chat, job = parsed(partial(prepare, defaults=defaults), chat_body(given, agent_id))
    return Run(chat, job, [m.model_dump() for m in chat.messages])


async def prepare_run(
    request: Request, given: RunInput, agent_id: str, defaults: Defaults, size: int
) -> Run:
    """A run as a chat submit (``agui.runs.chat_body``), checked and converted off the
    event loop when its body was large."""
    return await offloop(request).run_sized(size, _run, given, agent_id, defaults)
