"""The finishing of ``/openapi.json``: what FastAPI generates by itself, amended once,
the first time the document is asked for (``with_stream_ids``): every stream id's and
chat id's grammar, every 422 as an ``ErrorBody``, the resume points' grammar, the
credentials each route takes, and no unused schema. It changes no behaviour.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from broadcaster.core import names
from broadcaster.http import openapi, openapi_requests

AGENT_ID = names.EVENT_TYPE_PATTERN
"""An AG-UI agent id: ``default`` or a provider's name (lower case, digits and dashes, as
an event type's name)."""


def describe_stream_ids(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    """Give every ``{stream_id}`` and ``{chat_id}`` path parameter (and AG-UI's
    ``{thread_id}``, a chat id) the contract's grammar, and AG-UI's ``{agent_id}`` an agent
    name's. The routes check them themselves (404, never reaching Redis), so FastAPI is not
    asked to."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") != "path":
                    continue
                if param.get("name") in ("stream_id", "chat_id", "thread_id"):
                    param["schema"] = {"type": "string", "pattern": pattern}
                elif param.get("name") == "agent_id":
                    param["schema"] = {"type": "string", "pattern": AGENT_ID}
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
        "description": openapi.WHY[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        **({"headers": openapi.ERROR_HEADERS[status]} if status in openapi.ERROR_HEADERS else {}),
    }


def finish(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    """What the routes cannot say in their decorators: the contract's grammar on every
    ``{stream_id}`` and ``{chat_id}`` and on the resume point parameters, every 422 an
    ``ErrorBody`` (as the app answers it), and the credentials (Bearer on ``/v1``,
    ``?token=`` on the reading routes), none required where a deployment configures none."""
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
                invalid["description"] = openapi.WHY[422]
            for param in operation.get("parameters", []):
                if param.get("name") == "last_event_id" and path.startswith("/v1/streams/"):
                    param["schema"] = {"type": "string", "pattern": openapi_requests.RESUME_POINT}
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
