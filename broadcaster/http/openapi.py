"""What ``/openapi.json`` says: request bodies, headers and query parameters, and every
answer with its content type, body and headers.

The routes read their bodies and most headers themselves (``bodies.read_json``: a byte
limit before parsing, then the pydantic models or ``events.dump_batch``; the Durable
Streams protocol's headers), so FastAPI cannot see them. These fragments describe the same
shapes in the schema, so that clients and schema-driven fuzzers (schemathesis, with every
response check, in tests/integration/test_fuzz_api.py) know the real requests and answers:
the headers every 401 (``WWW-Authenticate``), 429 and busy 503 (``Retry-After``) and the
Durable Streams answers carry, and the bodies and media types of each success. The routes
use them in their ``responses=`` and ``openapi_extra=``; ``finish`` amends what FastAPI
generates by itself (its 422, stream ids, the credentials). They change no behaviour.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from broadcaster.core import names


class ErrorBody(BaseModel):
    """Every error: a machine-readable code and a message for humans (and, for some,
    more fields such as ``last_event_id`` or ``details``)."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


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
    """``anthropic`` or ``openai``: the provider the generation was queued for."""
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
    generation_id: str
    status: str
    messages: list[dict[str, Any]]
    queued: list[QueuedMessage]


class ProviderStatus(BaseModel):
    live_workers: bool
    last_seen: str | None


class Ready(BaseModel):
    """``200`` of ``GET /readyz``."""

    status: str
    connections: int
    viewers: int
    streams: int
    providers: dict[str, ProviderStatus]


def ok(status: int, model: type[BaseModel], description: str) -> dict[int | str, Any]:
    """The ``responses=`` entry for a route's success body."""
    return {status: {"model": model, "description": description}}


_WHY = {
    400: "malformed: the resume point or offset is not one this server issued, or a header"
    " is invalid",
    401: "an API key or viewer token is required",
    403: "the API key lacks the right",
    404: f"no such stream (unknown, expired, or an id outside {names.STREAM_ID_PATTERN})",
    405: "a stream of events is read-only as a Durable Stream (Allow: GET, HEAD)",
    409: "conflict: the id exists, the stream has ended, or the resume point is ahead",
    410: "gone: the Durable Stream was deleted (streams forked from it live on), or the"
    " offset is not in its history",
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

_ERROR_HEADERS: dict[int, dict[str, Any]] = {
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
        entry: dict[str, Any] = {"model": ErrorBody, "description": _WHY[status]}
        if status in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[status]
        out[status] = entry
    return out


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` substituted in place: a fragment in
    ``openapi_extra`` cannot point at ``#/$defs/...``."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of this schema."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


def model_body(model: type[BaseModel]) -> dict[str, Any]:
    return json_body(_inline(model.model_json_schema()))


EVENT = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "pattern": names.EVENT_TYPE_PATTERN}},
    "additionalProperties": True,
}
"""One event object: a ``type`` and any other JSON fields."""

PUBLISH_BODY = json_body({"oneOf": [EVENT, {"type": "array", "minItems": 1, "items": EVENT}]})
"""One event, or a non-empty list appended atomically."""

TOKEN_BODY = json_body(
    {
        "type": "object",
        "properties": {
            "ttl_seconds": {"type": "integer", "minimum": 1},
            "sub": {"type": "string", "minLength": 1, "maxLength": 256},
        },
        "additionalProperties": False,
    },
    required=False,
)

APPROVAL_BODY = json_body(
    {
        "type": "object",
        "required": ["approvalId", "approved"],
        "properties": {
            "approvalId": {"type": "string", "minLength": 1},
            "approved": {"type": "boolean"},
            "reason": {"type": ["string", "null"]},
        },
        "additionalProperties": False,
    }
)

CHAT_BODY = json_body(
    {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "id": {"type": "string", "pattern": names.STREAM_ID_PATTERN},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["id", "role", "parts"],
                    "properties": {
                        "id": {"type": "string", "minLength": 1},
                        "role": {"enum": ["system", "user", "assistant"]},
                        "parts": {
                            "type": "array",
                            "items": {"type": "object", "required": ["type"]},
                        },
                    },
                },
            },
            "trigger": {"enum": ["submit-message", "regenerate-message"]},
            "messageId": {"type": ["string", "null"]},
            "chatId": {"type": "string", "pattern": names.STREAM_ID_PATTERN},
            "multitask": {"enum": ["reject", "enqueue", "interrupt", "steer"]},
        },
        "additionalProperties": True,
        "description": "the AI SDK's DefaultChatTransport body (WorkflowChatTransport's: "
        "messages and the app's body; without id or chatId the server assigns one); beside "
        "id, messages, trigger, messageId and multitask only the generation request's "
        "parameters (model, max_tokens, system, "
        "provider, metadata, tools, tool_choice, thinking, temperature, top_p, top_k, "
        "stop_sequences, service_tier, max_steps)",
    }
)
"""``POST /v1/chat``: the AI SDK's UI messages (``UIMessage[]``) and generation fields."""

RESUME_POINT = names.RESUME_POINT_PATTERN
"""A stream's resume point: a seq, or an id ``<seq>.<tag>`` (core/sse.py); empty: none."""

MUX_RESUME_POINT = names.MUX_RESUME_POINT_PATTERN
"""A ``/v1/events`` resume point: a base (``-``: none) and the positions moved since, a
stream named by its index in the base or as ``~<id>`` (dashboard/cursor.py); empty: none."""

LAST_EVENT_ID = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "the resume point: an id this server issued, or a decimal seq",
            "schema": {"type": "string", "pattern": RESUME_POINT},
        }
    ]
}


CHAT_LAST_EVENT_ID = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "the resume point in the chat's running generation: an id this"
            " server issued, or a decimal seq (read only when the chat has one, and without"
            " startIndex; then 400 when malformed)",
            "schema": {"type": "string"},
        }
    ]
}


_ID_LIST = {"type": "array", "items": {"type": "string", "pattern": names.STREAM_ID_PATTERN}}
EVENTS_QUERY = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "the connection's resume point, an id it was sent",
            "schema": {"type": "string", "pattern": MUX_RESUME_POINT},
        },
        {
            "name": "stream",
            "in": "query",
            "required": False,
            "description": "a stream to follow (repeatable). A request must name a stream or a"
            " prefix: one that names neither is 400",
            "schema": _ID_LIST,
            "style": "form",
            "explode": True,
        },
        {
            "name": "prefix",
            "in": "query",
            "required": False,
            "description": "every stream whose id starts with it, now and later (repeatable)",
            "schema": _ID_LIST,
            "style": "form",
            "explode": True,
        },
        {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "description": "the resume point, for an EventSource that cannot send the header"
            " (not read when the header is sent)",
            "schema": {"type": "string", "pattern": MUX_RESUME_POINT},
        },
    ]
}
"""``GET /v1/events``: the streams and prefixes it follows, and its resume point."""


# --- Server-Sent Events ---

SSE_EVENT = {
    "type": "object",
    "description": "one event of the stream (docs/api.md, the SSE wire format)",
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


# --- Durable Streams (docs/durable-streams.md) ---

DS_OFFSET = names.DS_OFFSET_PATTERN
DS_NEXT_OFFSET = {"type": "string", "pattern": "^[0-9]{16,20}_[0-9]{16}$"}
_DS_NEXT = header(
    "the offset after the last entry (the stream's, or this read's)",
    required=True,
    schema=DS_NEXT_OFFSET,
)
_DS_CLOSED = header("true: the stream is closed", schema={"type": "string", "enum": ["true"]})
_DS_PRODUCER = {
    "Producer-Epoch": header(
        "the producer's epoch", schema={"type": "string", "pattern": "^[0-9]+$"}
    ),
    "Producer-Seq": header("the producer's seq", schema={"type": "string", "pattern": "^[0-9]+$"}),
}
_DS_ALLOW = {
    "Allow": header(
        "a stream of events is read-only here",
        required=True,
        schema={"type": "string", "enum": ["GET, HEAD"]},
    )
}


def _ds_errors(*statuses: int, **headers: dict[str, Any]) -> dict[int | str, Any]:
    """Error entries of a Durable Streams route; ``headers`` (by status, as ``s405``) add
    the protocol's own."""
    out = errors(*statuses)
    for key, extra in headers.items():
        entry = out[int(key.removeprefix("s"))]
        entry["headers"] = entry.get("headers", {}) | extra
    return out


def _merge(ok: dict[int | str, Any], refused: dict[int | str, Any]) -> dict[int | str, Any]:
    return ok | refused


DS_PUT_ANSWERS: dict[int | str, Any] = _merge(
    {
        201: {
            "description": "created; no body, Content-Type the stream's",
            "headers": {
                "Location": header("the stream's URL", required=True),
                "Stream-Next-Offset": _DS_NEXT,
                "Stream-Closed": _DS_CLOSED,
            },
        },
        200: {
            "description": "it exists with this configuration; no body, Content-Type the stream's",
            "headers": {"Stream-Next-Offset": _DS_NEXT, "Stream-Closed": _DS_CLOSED},
        },
    },
    _ds_errors(
        400,
        401,
        403,
        404,
        409,
        413,
        429,
        503,
        s409={"Retry-After": header("a fork being made here: retry", schema=SECONDS)},
    ),
)
DS_POST_ANSWERS: dict[int | str, Any] = _merge(
    {
        204: {
            "description": "appended, or closed (or an idempotent producer's duplicate)",
            "headers": {"Stream-Next-Offset": _DS_NEXT, "Stream-Closed": _DS_CLOSED} | _DS_PRODUCER,
        },
        200: {
            "description": "an idempotent producer's new data",
            "headers": {
                "Stream-Next-Offset": _DS_NEXT,
                "Stream-Closed": _DS_CLOSED,
                "Producer-Epoch": _DS_PRODUCER["Producer-Epoch"] | {"required": True},
                "Producer-Seq": _DS_PRODUCER["Producer-Seq"] | {"required": True},
            },
        },
    },
    _ds_errors(
        400,
        401,
        403,
        404,
        405,
        409,
        410,
        413,
        429,
        503,
        s403={"Producer-Epoch": _DS_PRODUCER["Producer-Epoch"]},
        s405=_DS_ALLOW,
        s409={
            "Stream-Closed": _DS_CLOSED,
            "Stream-Next-Offset": _DS_NEXT | {"required": False},
            "Producer-Expected-Seq": header("a seq gap: the seq expected"),
            "Producer-Received-Seq": header("a seq gap: the seq received"),
        },
    ),
)
DS_DELETE_ANSWERS: dict[int | str, Any] = _merge(
    {204: {"description": "deleted"}}, _ds_errors(401, 403, 404, 405, 410, 429, 503, s405=_DS_ALLOW)
)
DS_HEAD_ANSWERS: dict[int | str, Any] = _merge(
    {
        200: {
            "description": "the stream's metadata; Content-Type the stream's",
            "headers": {
                "Stream-Next-Offset": _DS_NEXT,
                "Cache-Control": header("no-store", required=True),
                "ETag": header("the tag a catch-up read from -1 would have", required=True),
                "Stream-Closed": _DS_CLOSED,
                "Stream-TTL": header("a sliding TTL, seconds", schema=SECONDS),
                "Stream-Expires-At": header("a fixed expiry (RFC 3339)"),
                "Allow": _DS_ALLOW["Allow"] | {"required": False},
            },
        }
    },
    _ds_errors(401, 403, 404, 410),
)
DS_GET_ANSWERS: dict[int | str, Any] = _merge(
    {
        200: {
            "description": "data: the stream's content (a JSON array of messages for"
            " application/json), or with live=sse Server-Sent Events",
            "content": {"*/*": {"schema": {}}, "text/event-stream": {"schema": SSE_EVENT}},
            "headers": {
                "Cache-Control": header("how long the answer may be cached", required=True),
                "Stream-Next-Offset": _DS_NEXT | {"required": False},
                "Stream-Up-To-Date": header("true: nothing more now", schema=_DS_CLOSED["schema"]),
                "Stream-Closed": _DS_CLOSED,
                "Stream-Cursor": header("live=long-poll: the cursor to send back"),
                "ETag": header("catch-up and long-poll reads"),
                "Stream-SSE-Data-Encoding": header(
                    "live=sse of a binary stream", schema={"type": "string", "enum": ["base64"]}
                ),
                "X-Accel-Buffering": SSE["X-Accel-Buffering"] | {"required": False},
            },
        },
        204: {
            "description": "live=long-poll: nothing new before the timeout, or the stream"
            " is closed",
            "headers": {
                "Stream-Next-Offset": _DS_NEXT,
                "Stream-Up-To-Date": header(
                    "true", required=True, schema={"type": "string", "enum": ["true"]}
                ),
                "Cache-Control": header("no-store", required=True),
                "Stream-Closed": _DS_CLOSED,
                "Stream-Cursor": header("the cursor to send back (an open stream)"),
            },
        },
        304: {
            "description": "If-None-Match matched the ETag",
            "headers": {"ETag": header("the answer's tag", required=True)},
        },
    },
    _ds_errors(400, 401, 403, 404, 410, 503),
)


def _header_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


_DS_BODY = {
    "requestBody": {
        "required": False,
        "description": "the data, in the stream's content type (any media type; a JSON array"
        " for application/json is flattened one level)",
        "content": {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INTEGER = {"type": "string", "pattern": "^0*[0-9]{1,15}$"}
"""Producer epochs and seqs: decimal, below 2^53."""
_CLOSED = _header_param(
    "Stream-Closed",
    "true (any case): close the stream; other values are ignored",
    {"type": "string"},
)
DS_PUT = _DS_BODY | {
    "parameters": [
        _header_param(
            "Stream-TTL",
            "a sliding TTL, seconds (not with Stream-Expires-At)",
            {"type": "string", "pattern": "^(0|[1-9][0-9]{0,8})$"},
        ),
        _header_param(
            "Stream-Expires-At",
            "a fixed expiry, RFC 3339 (not with Stream-TTL)",
            {"type": "string", "format": "date-time"},
        ),
        _CLOSED,
        _header_param(
            "Stream-Forked-From",
            "fork this stream (its path, /v1/stream/..., or URL)",
            {"type": "string", "pattern": "^(https?://[^/]+)?/v1/stream/.+$"},
        ),
        _header_param(
            "Stream-Fork-Offset",
            "fork at this offset of the source (with Stream-Forked-From)",
            {"type": "string", "pattern": DS_OFFSET},
        ),
        _header_param(
            "Stream-Fork-Sub-Offset",
            "take this many messages (or bytes) of the append after the fork point"
            " (with Stream-Forked-From)",
            {"type": "string", "pattern": "^(0|[1-9][0-9]{0,14})$"},
        ),
    ]
}
DS_POST = _DS_BODY | {
    "parameters": [
        _CLOSED,
        _header_param(
            "Stream-Seq",
            "strictly increasing per stream, compared byte by byte",
            {"type": "string"},
        ),
        _header_param(
            "Producer-Id",
            "an idempotent producer (with Producer-Epoch and Producer-Seq, all or none)",
            {"type": "string", "pattern": names.PRODUCER_ID_PATTERN},
        ),
        _header_param("Producer-Epoch", "the producer's epoch", _INTEGER),
        _header_param("Producer-Seq", "the producer's seq in its epoch", _INTEGER),
    ]
}
DS_GET = {
    "parameters": [
        {
            "name": "offset",
            "in": "query",
            "required": False,
            "description": "-1 (the start), now (the tail), or an offset this server gave;"
            " required with live",
            "schema": {"type": "string", "pattern": names.DS_READ_OFFSET_PATTERN},
        },
        {
            "name": "live",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["long-poll", "sse"]},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "the Stream-Cursor of the previous live answer",
            "schema": {"type": "string"},
        },
        _header_param("If-None-Match", "an ETag of a previous answer", {"type": "string"}),
    ]
}


def describe_stream_ids(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    """Give every ``{stream_id}`` and ``{chat_id}`` path parameter the contract's grammar.
    The routes check it themselves (404, never reaching Redis), so FastAPI is not asked to."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param.get("name") in ("stream_id", "chat_id"):
                    param["schema"] = {"type": "string", "pattern": pattern}
    return schema


def with_stream_ids(app: FastAPI, pattern: str) -> None:
    """Make ``app.openapi()`` describe stream ids by ``pattern`` and amend the rest of what
    FastAPI generates (``finish``), once, the first time it is asked for."""
    generated = app.openapi

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(generated(), pattern)
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]


# --- what FastAPI generates by itself ---

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (the producing routes, where BROADCASTER_API_KEYS is set) or"
        " a token, a JWT (the reading routes, where a token secret or a JWKS is set; and the"
        " producing and chat routes it opens)",
    },
    "token": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "a token where no header can be set (EventSource); Bearer wins",
    },
}
_OPEN: dict[str, list[str]] = {}
"""The empty requirement: a deployment without keys or tokens asks for no credential."""

RUN_ID = names.CHAT_STREAM_PATTERN
"""``GET /v1/chat/{chat_id}/stream`` takes a chat id or a run id."""


def _error_answer(status: int) -> dict[str, Any]:
    """An error answer as it appears in the finished document (``ErrorBody``)."""
    return {
        "description": _WHY[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {}),
    }


def finish(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    """What the routes cannot say in their decorators: every ``{stream_id}`` and
    ``{chat_id}`` path parameter has the contract's grammar (``describe_stream_ids``; a
    chat's stream takes a run id too); every 422 is an ``ErrorBody`` (the app's handler
    answers FastAPI's validation errors so, not with FastAPI's ``detail``); the resume
    point parameters FastAPI derives from the signatures have their grammar; and the
    credentials: ``Authorization: Bearer`` on every route of ``/v1``, ``?token=`` on those
    that read (and the chat routes), none required by a deployment that configures none."""
    describe_stream_ids(schema, pattern)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            if method in ("post", "put", "delete"):
                answers.setdefault("507", _error_answer(507))
            invalid = answers.get("422")
            if invalid is not None:
                invalid["content"] = {"application/json": {"schema": error}}
                invalid["description"] = _WHY[422]
            for param in operation.get("parameters", []):
                if param.get("name") == "last_event_id" and path.startswith("/v1/streams/"):
                    param["schema"] = {"type": "string", "pattern": RESUME_POINT}
                    param["description"] = (
                        "the resume point, for an EventSource that cannot send the header"
                        " (not read when the header is sent)"
                    )
                if param.get("name") == "chat_id" and path == "/v1/chat/{chat_id}/stream":
                    param["schema"] = {"type": "string", "pattern": RUN_ID}
            if not path.startswith("/v1/"):
                operation["security"] = []
                continue
            reads = method in ("get", "head") or path.startswith("/v1/chat")
            operation["security"] = [_OPEN, {"bearer": []}, *([{"token": []}] if reads else [])]
    schemas = components.get("schemas", {})
    text = json.dumps(schema["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)
    return schema
