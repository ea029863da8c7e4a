"""What ``/openapi.json`` says of the routes' answers: each success's body (the models
here), every error's (``ErrorBody``) with the headers it carries (``WWW-Authenticate`` on a
401, ``Retry-After`` on a 429, a busy 503 and a 507), and the SSE answers' media type and
headers. The routes use them in their ``responses=``; the requests are
``openapi_requests``', and ``openapi_finish`` amends what FastAPI generates by itself.
Schema-driven fuzzers (tests/integration/test_fuzz_api.py) hold the answers to them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.core import names


class ErrorBody(BaseModel):
    """Every error: a machine-readable code and a message for humans (and, for some,
    more fields such as ``last_event_id`` or ``details``)."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


class Usage(BaseModel):
    """What a generation's model calls used: ``input_tokens`` is all input (the cache's
    reads and writes included), ``reasoning_tokens`` a part of ``output_tokens``."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class ModelUsage(Usage):
    """One provider and model's share of a day of ``GET /v1/usage``."""

    provider: str
    model: str
    generations: int
    total_tokens: int
    """Input and output: what a daily budget counts."""


class DayUsage(BaseModel):
    date: str
    """The UTC day, ``YYYY-MM-DD``."""
    total_tokens: int
    models: list[ModelUsage]


class UsageReport(BaseModel):
    """``200`` of ``GET /v1/usage``: a user's generations, day by day and model by model."""

    user: str
    days: list[DayUsage]
    """Each day asked for, oldest first (a day nothing ended on has no models)."""
    total: Usage
    total_tokens: int
    generations: int


class GenerationCreated(BaseModel):
    """``202`` of ``POST /v1/generations``; the token fields only with a token secret."""

    id: str
    status: str
    events_url: str
    status_url: str
    viewer_token: str | None = None
    token_expires_at: int | None = None


class GenerationStatus(BaseModel):
    """``200`` of ``GET /v1/generations/{id}``."""

    id: str
    status: str
    """``queued``, ``running``, ``completed``, ``failed`` or ``cancelled``."""
    last_event_id: int
    """The seq of the newest event (0 before the first)."""
    text: str
    """The text so far; the final text once completed (of the last attempt if retried)."""
    usage: Usage | None
    error: str | None
    created_at: str | None
    updated_at: str | None
    provider: str
    """``anthropic``, ``openai``, or an agent a worker serves (docs/agents.md): the
    provider the generation was queued for."""
    model: str | None
    """The model that answered (from ``finish``), else the one requested."""
    content: list[dict[str, Any]]
    """The assistant turn as Anthropic content blocks (thinking with its ``signature``,
    ``redacted_thinking``, text, tool_use with its parsed ``input``), ready to be sent back
    in the next request's ``messages``."""


class Published(BaseModel):
    """``201`` of ``POST /v1/streams/{id}/events``."""

    last_event_id: int
    """The seq of the last event appended."""


class ViewerToken(BaseModel):
    """``200`` of ``POST /v1/streams/{id}/tokens``."""

    viewer_token: str
    token_expires_at: int


class ChatToken(BaseModel):
    """``200`` of ``POST /v1/chat/{id}/tokens``."""

    chat_token: str
    token_expires_at: int
    rights: list[Literal["read", "submit", "stop"]]
    """The uses of the chat the token carries."""


class Cancelled(BaseModel):
    """``202`` of ``POST /v1/generations/{id}/cancel``."""

    id: str
    status: str


class ChatStopped(BaseModel):
    """``202`` of ``POST /v1/chat/{id}/stop``."""

    id: str
    generation_id: str
    status: str


class Decided(BaseModel):
    """``200`` of the approvals routes."""

    generation_id: str
    approvalId: str
    approved: bool
    decided: bool
    resumed: bool


class ViewerCount(BaseModel):
    """``200`` of the viewers routes."""

    viewers: int
    subjects: list[str]


class QueuedMessage(BaseModel):
    generation_id: str
    message: dict[str, Any]


class ChatMessages(BaseModel):
    """``200`` of ``GET /v1/chat/{id}/messages``."""

    id: str
    generation_id: str | None
    """Its latest answer's generation; null for a chat seeded and not answered since."""
    status: str
    messages: list[dict[str, Any]]
    queued: list[QueuedMessage]
    version: int
    """One more at each change of its history: ``PUT``'s ``If-Match`` names it."""
    older: str | None = None
    """A page's (``limit``/``before`` given) cursor: ask ``before=`` it for the page
    before; null when the page starts the chat. Absent without ``limit``/``before``."""


class ProviderStatus(BaseModel):
    live_workers: bool
    last_seen: str | None


class UntrustedForwarded(BaseModel):
    """Requests lately whose forwarded header this front-end did not believe: its clients
    count as their peer's one address (set ``BROADCASTER_TRUSTED_PROXIES``)."""

    requests: int = Field(description="such requests since the process started")
    peers: int = Field(description="the peers that sent them (16 at most are told)")
    last_seconds_ago: float = Field(description="how long ago the last one came")


class Ready(BaseModel):
    """``200`` of ``GET /readyz``."""

    status: str
    connections: int
    viewers: int
    streams: int
    providers: dict[str, ProviderStatus]
    forwarded_untrusted: UntrustedForwarded | None = Field(
        description="null unless, in the last 10 minutes, a peer that is no trusted proxy "
        "sent X-Forwarded-For (or one sent Forwarded alone, which is not read): then every "
        "client behind it counts as one address. It does not make the front-end unready"
    )


def ok(status: int, model: type[BaseModel], description: str) -> dict[int | str, Any]:
    """The ``responses=`` entry for a route's success body."""
    return {status: {"model": model, "description": description}}


WHY = {
    400: "malformed: the resume point or offset is not one this server issued, or a header"
    " is invalid",
    401: "an API key or viewer token is required",
    403: "the API key lacks the right",
    404: f"no such stream (unknown, expired, or an id outside {names.STREAM_ID_PATTERN})",
    405: "a stream of events is read-only as a Durable Stream (Allow: GET, HEAD)",
    409: "conflict: the id exists, the stream has ended, or the resume point is ahead",
    410: "gone: the Durable Stream was deleted (streams forked from it live on), or the"
    " offset is not in its history",
    412: "precondition failed: If-Match names another version",
    413: "over a size limit (body, event or stream)",
    422: "invalid: not JSON, too deeply nested, or not the documented shape (the message names"
    " the field); for a new generation also: no running worker serves its provider",
    429: "over the API key's rate (or its fork bytes), or over the client's open connections;"
    " retry after Retry-After",
    503: "busy or Redis unavailable; retry after Retry-After",
    507: "Redis is full (its maxmemory): nothing was written, and nothing stored is lost;"
    " retry after Retry-After",
}


def header(
    description: str, *, required: bool = False, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response header's declaration."""
    return {
        "description": description,
        "required": required,
        "schema": schema if schema is not None else {"type": "string"},
    }


SECONDS = {"type": "string", "pattern": "^[0-9]+$"}

ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": header(
            "on every 401: present an API key or a token as Authorization: Bearer",
            required=True,
            schema={"type": "string", "enum": ["Bearer"]},
        )
    },
    429: {
        "Retry-After": header(
            "the seconds left in the rate limit's minute", required=True, schema=SECONDS
        )
    },
    503: {
        "Retry-After": header(
            "seconds to wait: on busy and not_replicated (unavailable, Redis not answering,"
            " carries none)",
            schema=SECONDS,
        )
    },
    507: {"Retry-After": header("seconds to wait", required=True, schema=SECONDS)},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses, with the headers each carries."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": WHY[status]}
        if status in ERROR_HEADERS:
            entry["headers"] = ERROR_HEADERS[status]
        out[status] = entry
    return out


# --- Server-Sent Events ---

SSE_EVENT = {
    "type": "object",
    "description": "one event of the stream (docs/api/sse.md)",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}

SSE = {
    "Cache-Control": header("the stream is not cached", required=True),
    "X-Accel-Buffering": header(
        "nginx (and proxies that honour it) must not buffer the stream",
        required=True,
        schema={"type": "string", "enum": ["no"]},
    ),
}
UI_MESSAGE_STREAM = {
    "x-vercel-ai-ui-message-stream": header(
        "the body is an AI SDK UI message stream",
        required=True,
        schema={"type": "string", "enum": ["v1"]},
    )
}
GENERATION_HEADER = {
    "x-generation-id": header(
        "the generation streamed",
        required=True,
        schema={"type": "string", "pattern": names.STREAM_ID_PATTERN},
    )
}
RUN_HEADERS = {
    "x-chat-id": header("the chat", schema={"type": "string", "pattern": names.STREAM_ID_PATTERN}),
    "x-workflow-run-id": header(
        "<chatId>~<generationId>~<base>: GET /v1/chat/{runId}/stream?startIndex=N resumes"
        " this answer"
    ),
    "x-workflow-stream-tail-index": header(
        "a run's stream: the index of its last chunk so far (-1: none yet)",
        schema={"type": "string", "pattern": "^-?[0-9]+$"},
    ),
}


SUBMIT_HEADERS = (
    UI_MESSAGE_STREAM
    | GENERATION_HEADER
    | {
        "x-chat-id": RUN_HEADERS["x-chat-id"] | {"required": True},
        "x-workflow-run-id": RUN_HEADERS["x-workflow-run-id"] | {"required": True},
    }
)
"""A chat submit's stream: the chat and its answer (the id the server assigned, if the
body named none)."""
RESUME_HEADERS = UI_MESSAGE_STREAM | GENERATION_HEADER | RUN_HEADERS
"""A chat's stream: the generation; and, of a run, the run and its tail index."""


def sse(description: str, headers: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """The ``responses=`` entry of an SSE route's 200."""
    return {
        200: {
            "description": description,
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
            "headers": SSE | (headers or {}),
        }
    }
