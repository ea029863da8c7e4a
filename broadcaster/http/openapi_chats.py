"""What ``/openapi.json`` says of a chat's history and its owner's chats
(``routes/chat_history.py``, ``routes/chats.py``): the seeding body and the answers.
They change no behaviour."""

from __future__ import annotations

from pydantic import BaseModel

from broadcaster.http.openapi import UI_MESSAGES, json_body

SEED_BODY = json_body(
    {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": UI_MESSAGES,
            "owner": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "description": "an API key's only: the sub of the token holder who owns the "
                "chat it makes",
            },
        },
        "additionalProperties": False,
        "description": "the chat's UI messages, oldest first, as GET /messages gives them",
    }
)
"""``PUT /v1/chat/{id}/messages``."""


class ChatSeeded(BaseModel):
    """``200``/``201`` of ``PUT /v1/chat/{id}/messages``."""

    id: str
    version: int
    messages: int


class ChatListed(BaseModel):
    """One chat of ``GET /v1/chats``."""

    id: str
    title: str
    status: str
    """``running``, ``waiting`` (for a person's decision) or ``finished``."""
    updated_at: str
    created_at: str | None
    turns: int


class ChatList(BaseModel):
    """``200`` of ``GET /v1/chats``: the caller's chats, newest first."""

    chats: list[ChatListed]
    older: str | None
    """Ask ``before=`` it for the next page; null at the end."""
