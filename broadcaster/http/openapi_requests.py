"""What ``/openapi.json`` says of the requests: each JSON body from the pydantic model the
route validates it with (``body``), and the headers and query parameters the routes read
themselves (FastAPI cannot see them: ``bodies.py`` reads the bodies, bounded, and the
routes their resume points)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broadcaster.core import names


def schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as the document holds it: its ``$defs`` put in place (a
    fragment in ``openapi_extra`` cannot point at ``#/$defs/...``), and no null (FastAPI
    leaves them out: ``"default": null``)."""
    found = model.model_json_schema()
    defs = found.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items() if v is not None}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(found)
    return resolved


def body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model``, the one its route validates
    with; ``required=False`` for a route that takes an empty body as ``{}``."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema(model)}},
        }
    }


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
            "name": "chat",
            "in": "query",
            "required": False,
            "description": "a chat whose answers to follow, now and later (repeatable): its"
            " generations, whose ids begin with c<16 hex digits of the chat id's SHA-256>_."
            " Opened by the chat's token, as its other routes",
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
