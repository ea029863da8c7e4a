"""What ``/openapi.json`` says of a chat's history and its owner's chats
(``routes/chat_history.py``, ``routes/chats.py``): their answers. They change no
behaviour."""

from __future__ import annotations

from pydantic import BaseModel


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
