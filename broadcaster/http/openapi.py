"""What ``/openapi.json`` says about request bodies and errors.

The routes read their bodies themselves (``bodies.read_json``: a byte limit before
parsing, then the pydantic models or ``events.dump_batch``), so FastAPI cannot see them.
These fragments describe the same shapes in the schema, so that clients and schema-driven
fuzzers (schemathesis, in tests/integration/test_fuzz_api.py) know the real bodies. They
change no behaviour. Their patterns are ``names``' published ones (``^...$``: JSON
Schema's ``$`` is the end of the string, never before a final newline).
"""

from __future__ import annotations

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
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses."""
    return {s: {"model": ErrorBody, "description": _WHY[s]} for s in statuses}


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

LAST_EVENT_ID = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "the resume point: an id this server issued, or a decimal seq",
            "schema": {"type": "string"},
        }
    ]
}


_ID_LIST = {"type": "array", "items": {"type": "string", "pattern": names.STREAM_ID_PATTERN}}
EVENTS_QUERY = {
    "parameters": [
        *LAST_EVENT_ID["parameters"],
        {
            "name": "stream",
            "in": "query",
            "required": False,
            "description": "a stream to follow (repeatable; with prefix, at least one)",
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
            "description": "the resume point, for an EventSource that cannot send the header",
            "schema": {"type": "string"},
        },
    ]
}
"""``GET /v1/events``: the streams and prefixes it follows, and its resume point."""


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
    """Make ``app.openapi()`` describe stream ids by ``pattern`` (``describe_stream_ids``),
    once, the first time it is asked for."""
    generated = app.openapi

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_stream_ids(generated(), pattern)
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
