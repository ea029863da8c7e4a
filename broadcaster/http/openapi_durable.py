"""What ``/openapi.json`` says of the Durable Streams routes (``routes/durable.py``,
docs/durable-streams.md): the protocol's request headers, bodies and query parameters, and
its answers with their headers (next offset, up-to-date, closed, producer, ``Allow``),
built from ``openapi``'s declarations. They change no behaviour.
"""

from __future__ import annotations

from typing import Any

from broadcaster.core import names
from broadcaster.http.openapi import SECONDS, SSE, SSE_EVENT, errors, header

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
