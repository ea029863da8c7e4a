"""A submit against the history the server keeps (``chat/placing.py``): ``{id, message}``
placed from the end of the chat's record, and ``{id, messages}`` compared with it, so
that the record writes only what the submit adds.

``{id, message}`` reads the record's end only (``Chats.end``): the message is placed
there, and the body the submit converts and checks is the message with the few messages
before it (the model turns it continues), not the whole chat: the record keeps each
message's model turns, and the answer's request names them (``Placed.whole`` False). A
record of an older version (no model turns beside its history), or a regenerate of an
answer before the end, is read whole and written whole once."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from broadcaster.chat.convert import UIMessage
from broadcaster.chat.messages import folded, so_far
from broadcaster.chat.placing import (
    End,
    HistoryConflict,
    NoSuchMessage,
    NotAtEnd,
    Placed,
    place_at_end,
    place_message,
    place_messages,
)
from broadcaster.chat.records import ChatEnd, Chats
from broadcaster.core.eventlog import EventLog
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_chats, get_event_log


def sends_one(body: dict[str, Any]) -> bool:
    """Whether a submit sends only its new message (``{id, message}``)."""
    return "message" in body and "messages" not in body


async def _history(
    chats: Chats, log: EventLog, chat_id: str
) -> tuple[str | None, list[Any], int] | None:
    """The chat's generation, its messages so far and its list's length; None for a
    record of an older version (its messages in one field), which is written whole."""
    record = await chats.get(chat_id)
    if record is None:
        return None, [], 0
    if record.legacy:
        return None
    found = await so_far(log, record)
    return record.generation, found, len(record.messages)


async def with_history(
    request: Request, body: dict[str, Any], *, whole: bool = False
) -> tuple[dict[str, Any], Placed]:
    """``{id, message}`` as ``{id, messages}``: the chat so far with the message put in
    its place (appended, an edit, a continuation, or after a regenerate's cut). With
    ``whole`` it is placed against the whole chat, read whole, so that its job carries
    the whole request (``BROADCASTER_CHAT_JOB_HISTORY=copy``)."""
    message = body["message"]
    if not isinstance(message, dict):
        raise ApiError(422, "invalid_request", "message: a UI message object is required")
    try:  # its shape first: the record is not read for junk
        UIMessage.model_validate(message)
    except ValidationError as exc:
        details = [
            {"loc": ["message", *e["loc"]], "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(
            422, "invalid_request", "message: not a UI message", details=details
        ) from None
    regenerate = body.get("trigger") == "regenerate-message"
    message_id = body.get("messageId")
    chats, log = await get_chats(request), await get_event_log(request)
    names = [i for i in (message.get("id"), message_id) if isinstance(i, str)]
    end = await chats.end(body["id"], END_READ, names)
    try:
        placed, context = await _at_end(
            chats, log, (body["id"], end), message, (regenerate, message_id), whole=whole
        )
    except NoSuchMessage as exc:
        raise ApiError(
            422, "invalid_request", f"messageId: the chat holds no answer {exc} to regenerate"
        ) from None
    rest = {k: v for k, v in body.items() if k != "message"}
    return rest | {"messages": [*context, *placed.push]}, placed


END_READ = 4
"""The messages of the record's end a submit of one message reads: its latest answer and
the user message it answers, in the common case, with room to spare."""
CONTEXT = 4
"""The messages before the submit's own that its check converts with it: the turns it
continues (an answer's tool calls, which the next turn answers)."""


async def _at_end(
    chats: Chats,
    log: EventLog,
    read: tuple[str, ChatEnd],
    message: dict[str, Any],
    regenerating: tuple[bool, Any],
    *,
    whole: bool = False,
) -> tuple[Placed, list[dict[str, Any]]]:
    """Where ``message`` goes in chat ``read`` (its id and end), and the messages before
    what it pushes that its check converts with it (all of them when it is placed against
    the whole chat, ``whole`` or not placed at the end: the job then carries the whole
    request). ``regenerating``: the body's trigger is a regenerate, and its ``messageId``."""
    (chat_id, end), (regenerate, message_id) = read, regenerating
    record = end.record
    if not whole and record is not None and not record.legacy and end.stepped:
        offset = end.length - len(end.last)
        tail = await folded(log, record, end.last)
        spot = End(offset, tail, end.length, end.places)
        try:
            placed = place_at_end(spot, message, regenerate=regenerate, message_id=message_id)
        except NotAtEnd:
            pass
        else:
            before = await _before(chats, chat_id, spot, placed.keep)
            return dataclasses.replace(placed, seen=record.generation), before
    placed = await _whole(chats, log, chat_id, message, regenerating)
    if record is not None and not end.stepped:  # written whole, its turns beside it
        return dataclasses.replace(placed, keep=-1, push=placed.messages), []
    return placed, placed.messages[: placed.keep]


async def _whole(
    chats: Chats,
    log: EventLog,
    chat_id: str,
    message: dict[str, Any],
    regenerating: tuple[bool, Any],
) -> Placed:
    """``message`` placed against the whole chat, read whole (``place_message``)."""
    found = await _history(chats, log, chat_id)
    seen, history, listed = found if found is not None else (None, [], 0)
    regenerate, message_id = regenerating
    placed = place_message(history, listed, message, regenerate=regenerate, message_id=message_id)
    return dataclasses.replace(placed, seen=seen)


async def _before(chats: Chats, chat_id: str, end: End, keep: int) -> list[dict[str, Any]]:
    """The ``CONTEXT`` messages of the chat before its first ``keep``."""
    start = max(0, keep - CONTEXT)
    head = await chats.history_range(chat_id, start, min(keep, end.offset))
    return [*head, *end.tail[max(start - end.offset, 0) : max(keep - end.offset, 0)]]


async def placed_all(
    request: Request, chat_id: str, sent: list[Any], *, refuse: bool
) -> Placed | None:
    """Where ``{id, messages}`` goes in the chat's record; 409 ``history_conflict`` when
    an earlier turn differs and the deployment refuses that."""
    found = await _history(await get_chats(request), await get_event_log(request), chat_id)
    if found is None:
        return None
    seen, history, listed = found
    try:
        placed = place_messages(history, listed, sent, refuse=refuse)
    except HistoryConflict as exc:
        raise ApiError(
            409,
            "history_conflict",
            f"messages[{exc.at}] differs from chat {chat_id!r} as the server keeps it: "
            "send only the new message ({id, message}), or the chat as GET /messages gives it",
        ) from None
    return None if placed is None else dataclasses.replace(placed, seen=seen)
