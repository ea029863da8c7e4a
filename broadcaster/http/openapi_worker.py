"""What ``/openapi.json`` says of the worker protocol's routes (``/v1/worker``,
docs/worker-protocol.md): their request bodies (pydantic models the route validates
with, so the document and the check are one) and their answers. They change no
behaviour."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from broadcaster.core import names
from broadcaster.http import openapi

MAX_EVENTS = 1000
"""The most events one append carries (413 beyond): the merge window is the writer's,
and a batch is one atomic append."""
MAX_WAIT_SECONDS = 60.0
"""The longest ``wait_seconds`` a claim may ask for (``BROADCASTER_WORKER_CLAIM_WAIT_SECONDS``
caps it further)."""


class ClaimBody(BaseModel):
    """``POST /v1/worker/claim``."""

    model_config = ConfigDict(extra="forbid")
    provider: str = Field(pattern=names.PROVIDER_NAME_PATTERN)
    """The provider this worker serves: it is advertised (``/readyz``) while it claims."""
    wait_seconds: float | None = Field(None, ge=0, le=MAX_WAIT_SECONDS)
    """How long to wait for a job (capped by the deployment's setting); 204 when none came."""


class LeaseBody(BaseModel):
    """``POST /v1/worker/jobs/{id}/lease`` and ``.../release``."""

    model_config = ConfigDict(extra="forbid")
    lease: str = Field(pattern=names.LEASE_PATTERN)


class AppendBody(BaseModel):
    """``POST /v1/worker/jobs/{id}/events``."""

    model_config = ConfigDict(extra="forbid")
    lease: str = Field(pattern=names.LEASE_PATTERN)
    after: int = Field(ge=0, le=10**15, strict=True)
    """The seq of the stream's last event, as this writer knows it (the claim's
    ``last_event_id``, then each append's): the append happens only there."""
    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        json_schema_extra={"items": cast(JsonDict, openapi.EVENT)},
    )
    """AI SDK UI message chunks, each an object with a ``type``; a terminal one (``finish``,
    ``error``, ``abort``) only last."""
    wait: WaitBody | None = None
    """Ask a person about these calls after the batch: the front-end appends a
    ``tool-approval-request`` for each, and the generation waits holding no worker (this
    lease is over); once decided, a claim hands the job out again with the decisions in
    its ``events`` (``data-approval``). No terminal chunk with it."""
    usage: dict[str, Any] | None = None
    """What the generation's model calls used, all of them, in the AI SDK's
    ``LanguageModelUsage`` shape (``inputTokens``: all input, the cache's reads and writes
    included; ``inputTokenDetails``, ``outputTokens``, ``outputTokenDetails``); only with
    a terminal chunk. A ``finish`` whose ``messageMetadata.usage`` says it needs none."""


MAX_ASKS = 64
"""The most calls one append may ask a person about."""
MAX_APPROVAL_SECONDS = 7 * 86400.0
"""The longest a generation may wait for a person's decision."""


class ApprovalAsk(BaseModel):
    """A tool call to ask a person about (its ``tool-input-available`` is in this batch
    or an earlier one)."""

    model_config = ConfigDict(extra="forbid")
    toolCallId: str = Field(min_length=1, max_length=256)
    toolName: str = Field(min_length=1, max_length=256)
    input: Any = None
    """The call's input: what a decision's ``inputHash`` is checked against."""


class WaitBody(BaseModel):
    """An append's ``wait``: the generation waits for a person after the batch."""

    model_config = ConfigDict(extra="forbid")
    approvals: list[ApprovalAsk] = Field(min_length=1, max_length=MAX_ASKS)
    timeout_seconds: float = Field(300.0, gt=0, le=MAX_APPROVAL_SECONDS)
    """How long to wait for the decisions; then each call still undecided is denied."""


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
CLAIM_BODY = openapi.model_body(ClaimBody)
LEASE_BODY = openapi.model_body(LeaseBody)
APPEND_BODY = openapi.model_body(AppendBody)
NO_JOB = {204: {"description": "no job came within the wait"}}
