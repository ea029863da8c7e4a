"""The front-end application: ``create_app`` assembles the routers, the error handlers,
CORS and the lifespan, and ``BroadcasterApp`` serves the SSE route below FastAPI's
middleware stack.

Nothing here reads the environment: the settings come in as an argument, and the
resources (Redis clients, the hub) are made by the lifespan (``resources.py``). (The
standard ``OTEL_*`` variables are the OpenTelemetry SDK's, read by ``core/tracing.py``
when the lifespan starts.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broadcaster.core import names, tracing
from broadcaster.core.logconfig import current_trace
from broadcaster.http import openapi_finish
from broadcaster.http.access import AccessPolicy
from broadcaster.http.errors import install_error_handlers
from broadcaster.http.metrics import FrontendMetrics
from broadcaster.http.resources import lifespan
from broadcaster.http.routes import agui as agui_routes
from broadcaster.http.routes import (
    chat,
    chat_history,
    chats,
    durable,
    events,
    generations,
    health,
    revocations,
    streams,
    tokens,
    usage,
    worker,
)
from broadcaster.http.settings import Settings
from broadcaster.viewers import refusals
from broadcaster.viewers.decision import Limits
from broadcaster.viewers.headers import SECURITY
from broadcaster.viewers.opening import ViewerSettings, Viewing
from broadcaster.viewers.refusals import Refusal
from broadcaster.viewers.slots import Slots

EVENTS_PATH = re.compile(r"/v1/streams/([^/]+)/events")
"""The SSE route's path, as Starlette's ``{stream_id}`` matches it."""


class BroadcasterApp(FastAPI):
    """FastAPI, with ``GET /v1/streams/{id}/events`` answered below its middleware stack
    by ``sse_route`` (set by ``create_app``): an open response would otherwise hold the
    stack for its whole life, a large share of an idle viewer's memory. The route stays
    declared for the OpenAPI document and ``HEAD``."""

    sse_route: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.sse_route
        if route is not None and scope["type"] == "http" and scope["method"] == "GET":
            match = EVENTS_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self
                scope["path_params"] = {"stream_id": match[1]}
                del match  # not held for the life of the stream
                await route(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, redis_url: str) -> BroadcasterApp:
    """The front-end application, connected to the Redis at ``redis_url``."""
    app = BroadcasterApp(
        title="broadcaster",
        version="0.1.0",
        summary="Numbered events in Redis Streams, fanned out over SSE with resume.",
        lifespan=_traced(redis_url),
        # A stream id of "/" (sent as %2F) would otherwise be redirected (307) to another
        # route; the contract answers a bad id with 404.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.access = AccessPolicy.from_settings(settings)
    app.state.metrics = FrontendMetrics(settings.max_connections)
    app.state.slots = Slots(
        settings.max_connections_per_subject, settings.max_connections_per_address
    )
    install_error_handlers(app)
    refused = app.state.metrics.viewers_refused
    app.exception_handler(Refusal)(
        refusals.answer(settings.busy_eventsource_retry, lambda r: refused.labels(r.reason).inc())
    )
    for module in (
        health,
        generations,
        streams,
        events,
        tokens,
        revocations,
        chat,
        chat_history,
        chats,
        durable,
        agui_routes,
        worker,
        usage,
    ):
        # The routes as their module built them (``stream_ids.api_router``), not included:
        # FastAPI builds an included router's routes again, for the app, at a start's cost.
        app.router.routes.extend(module.router.routes)
    openapi_finish.with_stream_ids(app, names.STREAM_ID_PATTERN)
    app.sse_route = streams.events_fast_path
    cors = cors_options(settings)
    app.state.viewing = _viewing(app, settings, cors=cors is not None)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
        app.sse_route = CORSMiddleware(app.sse_route, **cors)
    # The SSE fast path sets them itself (``viewers.headers``): a wrapper of ``send``
    # there would cost a call per chunk for the life of every viewer.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TraceRequests)
    built(app)
    return app


NO_ROUTE: Scope = {"type": "http", "method": "GET", "path": "/-", "root_path": "", "headers": []}
"""A request no route answers: matching it walks every route."""


def built(app: FastAPI) -> None:
    """FastAPI builds an included router's routes (their dependencies and models) on the
    first request that walks past them, on the event loop: a fresh front-end's first
    large requests would wait for every router before theirs. The app includes none (its
    routes are its modules'), and should one be included, a request that no route
    answers walks them all here, before serving."""
    for route in app.router.routes:
        route.matches(dict(NO_ROUTE))


def _viewing(app: FastAPI, settings: Settings, *, cors: bool) -> Viewing:
    """What the app serves viewers with (``viewers.opening``), from ``settings``; with
    CORS configured, the parser's path answers no viewer (the middleware has a say in
    every answer: ``Vary: Origin``)."""
    limits = Limits(settings.max_connections, settings.max_viewers_per_stream)
    config = ViewerSettings(
        settings.retry_ms,
        settings.retry_jitter_ms,
        settings.slow_viewer_timeout,
        settings.keepalive_seconds,
        limits,
        settings.token_leeway_seconds,
    )
    metrics = app.state.metrics
    return Viewing(
        config,
        app.state.slots,
        app.state.access.verifier,
        cut_off=metrics.cut_off.inc,
        resumed=metrics.resumed_from_memory.inc,
        cors=cors,
    )


def _traced(redis_url: str) -> Any:
    """The lifespan (``resources.lifespan``), with traces set up first and flushed last."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        tracing.setup("broadcaster")
        try:
            async with lifespan(app, redis_url=redis_url):
                yield
        finally:
            await tracing.close()

    return run


TRACED_PATHS = re.compile(r"\A/v1/(generations|chat|streams/[^/\s]+/events|stream/[^\s]+)\Z")
"""The requests that start or feed a stream (POST): each is a span of the caller's trace."""


def _route(path: str) -> str:
    if path.startswith("/v1/streams/"):
        return "/v1/streams/{stream_id}/events"
    return "/v1/stream/{path}" if path.startswith("/v1/stream/") else path


class TraceRequests:
    """A request that starts or feeds a stream (``TRACED_PATHS``) continues the caller's
    W3C ``traceparent`` (a bad or missing one starts a new trace): its span, with the
    job it queues keeping its traceparent (``generations/start.py``), its log lines
    carrying the trace id, and its response naming it (``traceparent``, ``x-trace-id``,
    added by ``SecurityHeaders``). Every other request passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not TRACED_PATHS.fullmatch(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                incoming = tracing.parse(value.decode("latin-1"))
                break
        route = _route(scope["path"])
        attributes = {"http.request.method": "POST", "http.route": route}
        with tracing.server_span(f"POST {route}", incoming, attributes) as parent:
            scope["traceparent"] = parent
            token = current_trace.set(parent)
            try:
                await self.app(scope, receive, _status_to(send) if tracing.traces.on else send)
            finally:
                current_trace.reset(token)


def _status_to(send: Send) -> Send:
    """``send``, noting the response's status on the request's span (traces on only)."""
    from opentelemetry import trace

    span = trace.get_current_span()

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)
        await send(message)

    return noting


class SecurityHeaders:
    """``X-Content-Type-Options: nosniff`` and ``Cross-Origin-Resource-Policy:
    cross-origin`` on every response, errors included: no browser sniffs a stream's bytes
    into something it would run, and a page on another origin may still ``fetch`` what
    its CORS rules allow (Durable Streams asks for both). A bare ASGI wrapper: no task and
    no buffering, so SSE responses stream through it untouched."""

    HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY.items()]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Once each: an SSE response below sets them itself (``headers.UI_MESSAGES``).
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                message["headers"] = headers + [h for h in self.HEADERS if h[0] not in present]
                parent = scope.get("traceparent")  # TraceRequests' request
                if parent:
                    trace = tracing.trace_id(parent).encode()
                    message["headers"] += [
                        (b"traceparent", parent.encode()),
                        (b"x-trace-id", trace),
                    ]
            await send(message)

        await self.app(scope, receive, with_headers)


def cors_options(settings: Settings) -> dict[str, Any] | None:
    """The CORS middleware's options for ``BROADCASTER_CORS_ORIGINS``; None when it names
    no origin (then no response carries CORS headers)."""
    origins = [o.strip() for o in (settings.cors_origins or "").split(",") if o.strip()]
    if not origins:
        return None
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST", "PUT", "DELETE", "HEAD"],
        # user-agent: some AI SDK versions set their own, which browsers preflight. The
        # rest are the Durable Streams protocol's request headers.
        "allow_headers": [
            "authorization",
            "content-type",
            "last-event-id",
            "user-agent",
            "if-none-match",
            "stream-seq",
            "stream-ttl",
            "stream-expires-at",
            "stream-closed",
            "stream-forked-from",
            "stream-fork-offset",
            "stream-fork-sub-offset",
            "producer-id",
            "producer-epoch",
            "producer-seq",
            "traceparent",
        ],
        # The generation a chat's stream carries, for a page that wants its status; and
        # what the Durable Streams protocol answers in headers.
        "expose_headers": [
            "traceparent",
            "x-trace-id",
            "x-generation-id",
            "x-chat-id",
            "x-workflow-run-id",
            "x-workflow-stream-tail-index",
            "etag",
            "location",
            "stream-next-offset",
            "stream-cursor",
            "stream-up-to-date",
            "stream-closed",
            "stream-sse-data-encoding",
            "stream-ttl",
            "stream-expires-at",
            "producer-epoch",
            "producer-seq",
            "producer-expected-seq",
            "producer-received-seq",
        ],
        "max_age": 600,
    }
