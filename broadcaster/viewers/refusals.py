"""A viewer refused, and how it is told (docs/security.md, "Limits").

``Refusal`` is the project's error body (``{"error": code, "message": text}``, with its
headers and fields), raised or returned by the viewer's checks (``decision``) and
answered by ``answer``, which the app installs for it. A refusal for want of room (the
admission rate, a connection limit: ``retry_after``) is answered to a browser's
``EventSource``, which gives up for good on any status but 200, as a 200
``text/event-stream`` holding only a jittered ``retry:`` and a comment, and no ``id:``:
it reconnects by itself, later, with the ``Last-Event-ID`` it had. Every other client
gets the status (503 ``busy`` or 429 ``too_many_connections``) with ``Retry-After``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broadcaster.viewers.headers import STREAMING

RETRY_MS = (1000, 3000)
"""The ``retry:`` a refused EventSource gets, at random in this range (ms)."""


class Refusal(Exception):
    """A viewer's request refused: ``status`` with ``{"error": code, "message": text}``,
    the fields ``extra`` names and its ``headers``; ``retry_after`` (seconds) for a
    refusal for want of room, which an EventSource is told as a ``retry:``; ``reason``,
    what the metrics count it by (the code, or which room was wanting: ``busy``'s)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason or code
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["retry-after"] = str(retry_after)
        self.extra = extra


Busy = Literal["connections", "stream_viewers", "admission_rate"]
"""Which room a 503 ``busy`` wanted: the front-end's connections, a stream's viewers
here, or a turn at the admission rate within its wait."""


def busy(message: str, retry_after: int, reason: Busy) -> Refusal:
    """503 ``busy``: this front-end has no room (``reason``)."""
    return Refusal(503, "busy", message, retry_after=retry_after, reason=reason)


def too_many(what: str) -> Refusal:
    """429 ``too_many_connections``: the client holds as many responses as it may here."""
    return Refusal(
        429, "too_many_connections", f"at most {what} on this front-end; retry", retry_after=2
    )


def is_eventsource(request: Request) -> bool:
    """Whether the request looks like a browser's ``EventSource``: it asks for
    ``text/event-stream`` without caching (the HTML standard's fetch of an event source
    sets both) and carries ``Sec-Fetch-Dest: empty``, which only browsers send and pages
    cannot set. ``fetch``-based readers (the AI SDK, Durable Streams clients) do not
    send ``Cache-Control: no-cache``, and non-browser clients (``StreamClient``) no
    ``Sec-Fetch-*``: they see the status and its ``Retry-After``."""
    h = request.headers
    return (
        request.method == "GET"
        and "text/event-stream" in h.get("accept", "")
        and "no-cache" in (h.get("cache-control", "") + h.get("pragma", ""))
        and h.get("sec-fetch-dest") == "empty"
    )


def retry_body() -> bytes:
    """A jittered ``retry:`` and a comment saying why: no event, no ``id:``."""
    ms = random.randint(*RETRY_MS)
    return b"retry: %d\n: busy; reconnect in %d ms\n\n" % (ms, ms)


def error_body(refusal: Refusal) -> JSONResponse:
    """The project's error body of ``refusal``, with its headers."""
    body = {"error": refusal.code, "message": refusal.message, **refusal.extra}
    response = JSONResponse(body, status_code=refusal.status)
    response.headers.update(refusal.headers)
    return response


def answer(
    eventsource_retry: bool, counted: Callable[[Refusal], None] | None = None
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The app's handler of ``Refusal``: a refusal for want of room is the retry frame
    for an EventSource (unless ``eventsource_retry``, ``BROADCASTER_BUSY_EVENTSOURCE_RETRY``,
    is off); every other refusal, and every other client, the error body. Each is told to
    ``counted`` first (the metrics)."""

    async def answering(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        if counted is not None:
            counted(exc)
        if exc.retry_after is not None and eventsource_retry and is_eventsource(request):
            return Response(retry_body(), media_type="text/event-stream", headers=STREAMING)
        return error_body(exc)

    return answering
