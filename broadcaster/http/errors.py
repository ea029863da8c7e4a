"""Every error the API answers is ``{"error": code, "message": text}`` (plus fields such as
``details`` or ``last_event_id``): the exception a route raises, and the handlers that
turn exceptions into those bodies.

The handlers are the app's (``install_error_handlers``); the SSE fast path, which runs
below Starlette's exception middleware, looks them up in the same table
(``handle_error``), so both ways of serving that route answer alike.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError, ResponseError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from broadcaster.chat import conversation
from broadcaster.core.durability import NotConfirmed
from broadcaster.generations.start import Busy, IdTaken, NotStarted, ProviderUnavailable

# The name the front-end's error lines have always carried (JSON logs show it).
log = logging.getLogger("broadcaster.app")


class ApiError(Exception):
    """A client's mistake: becomes ``{"error": code, "message": text}`` with ``status``.
    ``headers=`` in ``extra`` go into the response's headers, the rest into its body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


_REFUSALS = {
    conversation.ChatBusy: "chat_busy",
    conversation.QueueFull: "chat_queue_full",
    conversation.DecisionTooLate: "ended",
    conversation.NothingToDecide: "approval_unknown",
    conversation.ApprovalExpired: "approval_expired",
    conversation.ApprovalMismatch: "approval_mismatch",
}


def refused(exc: conversation.Refusal) -> ApiError:
    """A refused chat submit's answer (the chat route's and AG-UI's run): 409, naming the
    generation in the way if any."""
    extra = {} if exc.generation is None else {"generation_id": exc.generation}
    return ApiError(409, _REFUSALS[type(exc)], exc.message, **extra)


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = exc.extra.pop("headers", None)
    response = error_response(exc.status, exc.code, exc.message, **exc.extra)
    response.headers.update(headers or {})
    return response


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors()]
    return error_response(422, "invalid_request", "the request is invalid", details=details)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at the request's path: Starlette's 405 names only
    those of the first route that matched the path, and a path often has a route per
    method (``GET`` and ``POST /v1/streams/{id}/events``)."""
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own answers: no route (404), a method the path does not take (405,
    with ``Allow`` naming every method it takes, as RFC 9110 asks)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["allow"] = allowed_methods(request)
    return response


async def not_started(request: Request, exc: NotStarted) -> JSONResponse:
    """A generation the routes did not start (``generations/start.py``): 422 for a
    provider the deployment does not serve, 503 with Retry-After when too many are in
    flight, 409 when its id is taken."""
    if isinstance(exc, ProviderUnavailable):
        details = [{"loc": ["provider"], "msg": f"{exc.provider!r} is not served here"}]
        return error_response(422, "provider_unavailable", str(exc), details=details)
    if isinstance(exc, Busy):
        response = error_response(503, "busy", str(exc))
        response.headers["retry-after"] = "5"
        return response
    if isinstance(exc, IdTaken):
        return error_response(409, "conflict", str(exc))
    raise exc


async def not_replicated(request: Request, exc: Exception) -> JSONResponse:
    """A write that ``BROADCASTER_DURABILITY`` asks replicas (or disks) to confirm, and
    they did not in time (``core/durability.py``): not acknowledged. Retrying is safe:
    every write path is idempotent on retry (appends by seq, producers by their seq)."""
    log.warning("%s %s: not replicated: %s", request.method, request.url.path, exc)
    response = error_response(
        503,
        "not_replicated",
        f"written, but not yet on enough replicas ({exc}); retry (an idempotent producer's "
        "retry is deduplicated)",
    )
    response.headers["retry-after"] = "1"
    return response


async def redis_down(request: Request, exc: Exception) -> JSONResponse:
    if out_of_memory(exc):
        log.warning("redis is full: %s %s refused: %s", request.method, request.url.path, exc)
        response = error_response(
            507,
            "insufficient_storage",
            "the event store is full (Redis is at its maxmemory); retry later",
        )
        response.headers["retry-after"] = str(FULL_RETRY_AFTER)
        return response
    log.warning("redis error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the event store is unavailable; retry")


FULL_RETRY_AFTER = 30
"""Seconds a write refused by a full Redis is asked to wait: space comes back as streams
expire, or when an operator adds it, not in a moment."""


def out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write at its ``maxmemory`` (``noeviction``: it never evicts a
    stream to make room): ``OOM command not allowed…``, from a command or a script."""
    return isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and "command not allowed when used memory" in str(exc)
    )


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up while its body was read: nobody to answer, and nothing wrong on
    this side; logged in a line, not as an unhandled error (a formatted traceback costs
    the event loop milliseconds, and a client can hang up as often as it likes)."""
    log.info("client gone on %s %s: its body was not read whole", request.method, request.url.path)
    return error_response(400, "bad_request", "the client closed the connection mid-body")


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(ClientDisconnect)(client_gone)
    app.exception_handler(NotStarted)(not_started)
    app.exception_handler(NotConfirmed)(not_replicated)
    app.exception_handler(RedisError)(redis_down)
    # Not a RedisError, yet Redis trouble all the same: a Cluster failover, say.
    app.exception_handler(RedisClusterException)(redis_down)
    app.exception_handler(Exception)(internal_error)


async def handle_error(request: Request, exc: Exception) -> Response:
    """The answer the app's own handler for ``exc`` gives (the nearest class in its MRO
    with a handler), for code that runs where Starlette's middleware does not."""
    handlers = request.app.exception_handlers
    handler = next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    answer: Response = response
    return answer
