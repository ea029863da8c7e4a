"""The worker protocol's request bodies (``/v1/worker``, docs/worker-protocol.md): the
models its routes validate with, and the document describes (``openapi_requests.body``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.core import names
from broadcaster.http.event_bodies import Event

BODY = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
"""Every body here: JSON's own types only (no ``"1"`` for 1), no field it does not name."""

MAX_EVENTS = 1000
"""The most events one append carries (413 beyond): the merge window is the writer's,
and a batch is one atomic append."""
MAX_WAIT_SECONDS = 60.0
"""The longest ``wait_seconds`` a claim may ask for (``BROADCASTER_WORKER_CLAIM_WAIT_SECONDS``
caps it further)."""


class ClaimBody(BaseModel):
    """``POST /v1/worker/claim``."""

    model_config = BODY
    provider: str = Field(pattern=names.PROVIDER_NAME_PATTERN)
    """The provider this worker serves: it is advertised (``/readyz``) while it claims."""
    wait_seconds: float | None = Field(None, ge=0, le=MAX_WAIT_SECONDS)
    """How long to wait for a job (capped by the deployment's setting); 204 when none came."""


class LeaseBody(BaseModel):
    """``POST /v1/worker/jobs/{id}/lease`` and ``.../release``."""

    model_config = BODY
    lease: str = Field(pattern=names.LEASE_PATTERN)


class AppendBody(BaseModel):
    """``POST /v1/worker/jobs/{id}/events``."""

    model_config = BODY
    lease: str = Field(pattern=names.LEASE_PATTERN)
    after: int = Field(ge=0, le=10**15)
    """The seq of the stream's last event, as this writer knows it (the claim's
    ``last_event_id``, then each append's): the append happens only there."""
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)
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

    model_config = BODY
    toolCallId: str = Field(min_length=1, max_length=256)
    toolName: str = Field(min_length=1, max_length=256)
    input: Any = None
    """The call's input: what a decision's ``inputHash`` is checked against."""


class WaitBody(BaseModel):
    """An append's ``wait``: the generation waits for a person after the batch."""

    model_config = BODY
    approvals: list[ApprovalAsk] = Field(min_length=1, max_length=MAX_ASKS)
    timeout_seconds: float = Field(300.0, gt=0, le=MAX_APPROVAL_SECONDS)
    """How long to wait for the decisions; then each call still undecided is denied."""
