"""A submit against the history the server keeps (``chat/placing.py``): ``{id, message}``
made whole from the chat's record, and ``{id, messages}`` compared with it, so that the
record writes only what the submit adds."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from broadcaster.chat.convert import UIMessage
from broadcaster.chat.messages import so_far
from broadcaster.chat.placing import (
    HistoryConflict,
    NoSuchMessage,
    Placed,
    place_message,
    place_messages,
)
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_chats, get_event_log


def sends_one(body: dict[str, Any]) -> bool:
    """Whether a submit sends only its new message (``{id, message}``)."""
    return "message" in body and "messages" not in body


async def _history(request: Request, chat_id: str) -> tuple[str | None, list[Any], int] | None:
    """The chat's generation, its messages so far and its list's length; None for a
    record of an older version (its messages in one field), which is written whole."""
    record = await (await get_chats(request)).get(chat_id)
    if record is None:
        return None, [], 0
    if record.legacy:
        return None
    found = await so_far(await get_event_log(request), record)
    return record.generation, found, len(record.messages)


async def with_history(request: Request, body: dict[str, Any]) -> tuple[dict[str, Any], Placed]:
    """``{id, message}`` as ``{id, messages}``: the chat so far with the message put in
    its place (appended, an edit, a continuation, or after a regenerate's cut)."""
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
    found = await _history(request, body["id"])
    seen, history, listed = found if found is not None else (None, [], 0)
    regenerate = body.get("trigger") == "regenerate-message"
    try:
        placed = place_message(
            history, listed, message, regenerate=regenerate, message_id=body.get("messageId")
        )
    except NoSuchMessage as exc:
        raise ApiError(
            422, "invalid_request", f"messageId: the chat holds no answer {exc} to regenerate"
        ) from None
    rest = {k: v for k, v in body.items() if k != "message"}
    return rest | {"messages": placed.messages}, dataclasses.replace(placed, seen=seen)


async def placed_all(
    request: Request, chat_id: str, sent: list[Any], *, refuse: bool
) -> Placed | None:
    """Where ``{id, messages}`` goes in the chat's record; 409 ``history_conflict`` when
    an earlier turn differs and the deployment refuses that."""
    found = await _history(request, chat_id)
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
