"""What ``/openapi.json`` says of the worker protocol's answers (``/v1/worker``,
docs/worker-protocol.md); its request bodies are ``worker_bodies``'. They change no
behaviour."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broadcaster.http import openapi


class Signals(BaseModel):
    stop: bool
    """The generation ended (a person stopped it, or it was cancelled): stop the agent."""
    ended: str | None
    """How it ended (``abort``, ``finish``, ``error``), null while it runs."""
    steer: list[dict[str, Any]]
    """Messages sent to steer the answer, oldest first (``{id, text}``): hand them to the
    agent at its next step and record them as ``data-steer`` events."""


class ClaimedJob(BaseModel):
    """``200`` of ``POST /v1/worker/claim``."""

    generation_id: str
    lease: str
    lease_seconds: float
    provider: str
    attempt: int
    last_event_id: int
    """The stream's seq: 0 for a new job, more on a takeover (``events`` are those)."""
    request: dict[str, Any]
    """The stored generation request: ``messages``, ``system``, ``tools``, ``metadata``,
    ``model``, ``max_tokens``, ``chat_id`` (for a chat's answer)…"""
    chat_id: str | None
    message_id: str
    """The ``messageId`` the ``start`` chunk must carry (the chat's assistant message)."""
    events: list[dict[str, Any]]
    events_complete: bool
    signals: Signals


class Appended(BaseModel):
    """``200`` of ``POST /v1/worker/jobs/{id}/events``."""

    last_event_id: int
    duplicate: bool
    """The same batch was appended already (an answer lost, the request sent again)."""
    signals: Signals


class Renewed(BaseModel):
    """``200`` of ``POST /v1/worker/jobs/{id}/lease``."""

    lease_seconds: float
    signals: Signals


class Released(BaseModel):
    """``200`` of ``POST /v1/worker/jobs/{id}/release``."""

    generation_id: str
    status: str


WORKER_401 = openapi.errors(401, 403)
NO_JOB = {204: {"description": "no job came within the wait"}}
