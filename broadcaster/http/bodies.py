"""Reading request bodies: the routes read them themselves, not through FastAPI, so that
every bound applies as the bytes stream in, before anything is parsed (413 at once: the
bytes, and the JSON values they can hold), the parse is strict (422: not UTF-8, NaN or
an infinity, a lone surrogate, deeper than the limit; never a 500), and a large body is
parsed off the event loop (``offloop.py``). ``openapi.py`` describes the same shapes
for clients."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from broadcaster.core import events
from broadcaster.http.errors import ApiError
from broadcaster.http.offloop import BODY_BYTES, Offloop
from broadcaster.http.settings import Settings

_SEPARATORS = b",:[{"


def separators(chunk: bytes) -> int:
    """How many JSON values ``chunk`` can begin at most: every value but a body's first
    follows a ``[``, ``{``, ``,`` or ``:``. Counted in C as the chunk arrives; those
    characters inside strings count too, so the bound errs on the side of the server.
    One pass (what deleting them leaves), not a count of each: this runs on the loop."""
    return len(chunk) - len(chunk.translate(None, _SEPARATORS))


async def read_bytes(request: Request, limit: int, *, values: int | None = None) -> bytes:
    """The body, refused (413) the moment it passes ``limit`` bytes (or says it will, in
    ``Content-Length``) or, with ``values``, can hold more JSON values than that
    (``separators``): never read whole, nor parsed."""
    declared = request.headers.get("content-length")
    close = {"connection": "close"}  # the rest is not read: the connection cannot go on
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body over {limit} bytes", headers=close)
    body = bytearray()
    counted = 0
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes", headers=close)
        if values is not None:
            counted += separators(chunk)
            if counted > values:
                raise ApiError(
                    413,
                    "too_complex",
                    f"request body of more than {values} JSON values",
                    headers=close,
                )
    BODY_BYTES.set(len(body))
    return bytes(body)


def offloop(request: Request) -> Offloop:
    """The front-end's pool for request work (``resources.lifespan`` makes it)."""
    pool: Offloop = request.app.state.offloop
    return pool


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON (``read_json_sized``)."""
    value, _ = await read_json_sized(request, limit)
    return value


async def read_json_sized(request: Request, limit: int) -> tuple[Any, int]:
    """The body as JSON (``parse_json``), and its size in bytes: bounded as it streams in
    (``read_bytes``: at most ``limit`` bytes and ``BROADCASTER_MAX_JSON_VALUES`` values),
    parsed off the event loop when it is large."""
    settings: Settings = request.app.state.settings
    raw = await read_bytes(request, limit, values=settings.max_json_values)
    return await offloop(request).run_sized(len(raw), parse_json, raw), len(raw)


def parse_json(body: bytes) -> Any:
    """``body`` as strict JSON (``events.loads_strict``): UTF-8 only, no NaN, infinity
    or lone surrogate, nested at most ``keys.MAX_JSON_DEPTH`` deep; else 422."""
    if not body:
        raise ApiError(422, "invalid_json", "the request body is empty; expected JSON")
    try:
        return events.loads_strict(body)
    except events.InvalidJson as exc:
        raise ApiError(422, exc.code, f"the body is not valid JSON: {exc}"[:300]) from None


def strict_json(value: Any) -> None:
    """Refuse what JSON cannot carry to the model provider: NaN and infinities (which
    Python's parser accepts) and lone surrogates such as ``"\\ud800"`` (not UTF-8)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:  # UnicodeEncodeError is a ValueError
        raise ApiError(422, "invalid_request", f"not valid JSON text: {exc}"[:300]) from None


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any, what: str = "not a valid body") -> M:
    """``body`` (strict JSON) as ``model``; 422 ``invalid_request`` naming each field that
    is wrong."""
    strict_json(body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", what, details=validation_details(exc)) from None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the ``details`` of a 422: where, and what is wrong."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
