"""Stream ids in paths: checked before anything else (a bad id never reaches Redis), and
made by the server when a client names none; and no path with a control character."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, Request

from broadcaster.core import names
from broadcaster.core.logconfig import current_stream
from broadcaster.http.errors import ApiError

new_stream_id = names.new_id
"""A new stream id (or chat id): never one of the server's reserved names."""


def check_not_reserved(name: str) -> None:
    """403 ``reserved`` for a stream id or Durable Streams path a producer may not create:
    one under a prefix the server keeps for its own streams (a chat's answers), so that
    nothing a producer writes lands in a chat's feed."""
    if names.is_reserved(name):
        raise ApiError(
            403,
            "reserved",
            f"{name[:80]!r}: names beginning c, 16 hex digits and _ are the server's own "
            "(a chat's answers)",
        )


async def producible(request: Request) -> None:
    """The dependency form of ``check_not_reserved``, for the stream or path a producing
    route names (``stream_id`` or ``path``)."""
    params = request.path_params
    name = params.get("stream_id") or params.get("path")
    if isinstance(name, str):
        check_not_reserved(name)


def check_stream_id(stream_id: str) -> None:
    """404 unless ``stream_id`` is a stream id; then every log line of this request names
    the stream."""
    if not names.is_stream_id(stream_id):
        raise ApiError(404, "not_found", f"no such stream: ids match {names.STREAM_ID_PATTERN}")
    current_stream.set(stream_id)


async def valid_stream_id(stream_id: str) -> None:
    """The dependency form of ``check_stream_id``, first on every route with an id, so a
    bad id is 404 before any access check. ``async``: a plain function would run in a
    thread, and the log context it sets would not reach the route."""
    check_stream_id(stream_id)


def utf8_url_path(request: Request, path: str) -> bool:
    """Whether the URL's percent-decoded path (``path``: a part of it, as decoded) is
    UTF-8. The server decodes it with U+FFFD for each invalid byte, so a path holding one
    may name another path."""
    if "\ufffd" not in path:
        return True
    try:
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def no_control_in_path(request: Request) -> None:
    """404 for a URL whose (percent-decoded) path holds a control character: no name of
    this API has one. Every route's first dependency (``api_router``): Starlette matches
    routes with patterns ending in ``$``, which also matches before a final newline, so
    ``/v1/stream/a%0A`` would otherwise reach the route as the path ``a``, and
    ``/v1/generations%0A`` as ``/v1/generations``."""
    if names.has_control(request.scope["path"]):
        raise ApiError(404, "not_found", "no path of this API holds a control character")


def api_router() -> APIRouter:
    """A router of the API's, ``no_control_in_path`` first among each route's
    dependencies. ``create_app`` serves its routes as the module's import built them:
    FastAPI would build an included router's routes again, for the app."""
    return APIRouter(dependencies=[Depends(no_control_in_path)])
