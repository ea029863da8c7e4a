"""Who may use a chat, beyond what opens its routes (``access.check_chat``): a chat
belongs to whoever made it, and only its owner, or an API key (with the use's right, a
key acts on every chat), reads it, submits to it or deletes it.

The owner is who made the chat (``chat/owners.py``): ``sub:<sub>`` for a token with a
subject, ``key:<name>`` for an API key (its non-secret name), empty otherwise (an open
deployment, a token without a subject, a legacy chat token). A chat with no owner is
anyone's the routes let in, as every chat was before owners.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from broadcaster.auth import tokens
from broadcaster.auth.tokens import ChatUse, Grant
from broadcaster.chat.records import ChatRecord, Chats
from broadcaster.core import names
from broadcaster.core.logconfig import current_stream
from broadcaster.http.access import check_chat, presented_key, presented_token
from broadcaster.http.errors import ApiError


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the owner a chat it makes gets, and whether it acts on every chat."""

    owner: str
    every_chat: bool


def check_chat_id(chat_id: str) -> None:
    """404 unless ``chat_id`` is a chat id (the grammar of stream ids)."""
    if not names.is_chat_id(chat_id):
        raise ApiError(404, "not_found", f"no such chat: ids match {names.STREAM_ID_PATTERN}")


async def valid_chat_id(chat_id: str) -> None:
    """The dependency form of ``check_chat_id``: before any access check."""
    check_chat_id(chat_id)


async def caller(request: Request) -> Caller:
    """Who asks, once its credential was checked (``check_chat`` or the list's own)."""
    cached: tuple[str, Grant] | None = getattr(request.state, "token_grant", None)
    token = presented_token(request)
    if cached is not None and cached[0] == token:
        subject = cached[1].subject
        return Caller(f"sub:{subject}" if subject else "", False)
    if token and tokens.shape(token) == "legacy":
        return Caller("", True)  # its signature names its one chat
    key = await presented_key(request)
    if key is not None:
        return Caller(f"key:{key.name}", True)
    return Caller("", False)


def check_owner(who: Caller, record: ChatRecord | None, chat_id: str) -> None:
    """403 when the chat has an owner and ``who`` is neither it nor a key."""
    if record is None or not record.owner or who.every_chat or who.owner == record.owner:
        return
    raise ApiError(403, "forbidden", f"chat {chat_id[:80]!r} is another's")


async def opened(
    request: Request, chats: Chats, chat_id: str, use: ChatUse
) -> tuple[ChatRecord | None, Caller]:
    """The chat's record (no messages) and who asks, once its id, the caller's access
    for ``use`` and its ownership are checked."""
    check_chat_id(chat_id)
    await check_chat(request, chat_id, use)
    record = await chats.get(chat_id, whole=False)
    who = await caller(request)
    check_owner(who, record, chat_id)
    if record is not None and record.generation:  # this request's log lines name it
        current_stream.set(record.generation)
    return record, who
