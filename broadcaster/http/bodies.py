"""Reading request bodies: the routes read them themselves, not through FastAPI, so that
a size limit applies before a byte is parsed and a nesting limit before a byte is stored
(``openapi.py`` describes the same shapes for clients)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from broadcaster.core import keys
from broadcaster.http.errors import ApiError


async def read_bytes(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes")
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all."""
    return parse_json(await read_bytes(request, limit))


def parse_json(body: bytes) -> Any:
    """``body`` as JSON: UTF-8 only (RFC 8259; Python's parser alone would also take
    UTF-16 and UTF-32), nested at most ``keys.MAX_JSON_DEPTH`` deep; else 422."""
    if not body:
        raise ApiError(422, "invalid_json", "the request body is empty; expected JSON")
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError (not UTF-8).
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None
    if depth_over(parsed, keys.MAX_JSON_DEPTH):
        raise ApiError(
            422, "too_deep", f"the body nests arrays and objects deeper than {keys.MAX_JSON_DEPTH}"
        )
    return parsed


def depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts deeper than ``limit`` (iterative: a deep
    value must not exhaust the stack here either)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def strict_json(value: Any) -> None:
    """Refuse what JSON cannot carry to the model provider: NaN and infinities (which
    Python's parser accepts) and lone surrogates such as ``"\\ud800"`` (not UTF-8)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:  # UnicodeEncodeError is a ValueError
        raise ApiError(422, "invalid_request", f"not valid JSON text: {exc}"[:300]) from None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the ``details`` of a 422: where, and what is wrong."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
