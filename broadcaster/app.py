"""The HTTP API (FastAPI): routes, request validation and error bodies.

Resources (Redis clients, the hub) are created in the lifespan and live in
``app.state``; nothing here reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.exceptions import RedisClusterException, RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from broadcaster import auth, connection, keys, openapi, readers, sse
from broadcaster.events import InvalidEvent
from broadcaster.hub import Hub, HubConfig
from broadcaster.jobs import JobQueue
from broadcaster.log import (
    EventLog,
    EventTooLarge,
    StaleWriter,
    StreamEnded,
    StreamFull,
    StreamNotFound,
    WrongKind,
)
from broadcaster.logs import current_stream
from broadcaster.metrics import FrontendMetrics
from broadcaster.settings import Settings
from broadcaster.sse_response import SSEResponse

log = logging.getLogger("broadcaster.app")

SSE_HEADERS = {
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}


EVENTS_PATH = re.compile(r"/v1/streams/([^/]+)/events")
"""The SSE route's path, as Starlette's ``{stream_id}`` matches it."""


class BroadcasterApp(FastAPI):
    """FastAPI, with ``GET /v1/streams/{id}/events`` served below its middleware stack.

    An SSE response lives as long as its viewer watches, and everything its request went
    through stays on the stack meanwhile: with Starlette's middleware, router and
    FastAPI's request wrappers that is about 11 KiB per open connection, a third of an
    idle viewer's memory. ``sse_route`` (set by ``create_app``) answers that route with
    the same handler, errors and CORS, but holds only its own frames. The route stays
    declared on FastAPI too: the OpenAPI document describes it, and a ``HEAD`` goes
    there."""

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


class ApiError(Exception):
    """A client's mistake: becomes ``{"error": code, "message": text}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


# --- request bodies ---


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class GenerationRequest(BaseModel):
    """``POST /v1/generations``: exactly one of ``prompt`` or ``messages``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, min_length=1)
    messages: list[Message] | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, strict=True)  # not true, 1.0 or "1"
    system: str | None = None
    id: str | None = Field(None, pattern=keys.STREAM_ID_RE.pattern)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


def new_stream_id() -> str:
    """128 random bits, URL-safe: 22 characters of ``[A-Za-z0-9_-]``."""
    return secrets.token_urlsafe(16)


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds")


def _check_id(stream_id: str) -> None:
    if not keys.STREAM_ID_RE.match(stream_id):
        raise ApiError(404, "not_found", "no such stream: ids match ^[A-Za-z0-9_-]{1,64}$")
    current_stream.set(stream_id)  # every log line of this request names the stream


async def _read_json(request: Request, limit: int) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes")
    if not body:
        raise ApiError(422, "invalid_json", "the request body is empty; expected JSON")
    try:
        parsed = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError (invalid UTF-8).
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None
    if _depth_over(parsed, keys.MAX_JSON_DEPTH):
        raise ApiError(
            422, "too_deep", f"the body nests arrays and objects deeper than {keys.MAX_JSON_DEPTH}"
        )
    return parsed


def _depth_over(value: Any, limit: int) -> bool:
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


def _strict_json(value: Any) -> None:
    """Refuse what JSON cannot carry to the model provider: NaN and infinities (which
    Python's parser accepts) and lone surrogates such as ``"\\ud800"`` (not UTF-8)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:  # UnicodeEncodeError is a ValueError
        raise ApiError(422, "invalid_request", f"not valid JSON text: {exc}"[:300]) from None


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def create_app(settings: Settings, redis_url: str) -> BroadcasterApp:
    """The front-end application, connected to the Redis at ``redis_url``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connection.command_client(redis_url, settings.redis_pool_size)
        route = readers.route_for(redis_url, redis, settings.read_block_ms)
        event_log = EventLog(
            redis,
            ended_ttl=settings.ended_ttl_seconds,
            idle_ttl=settings.idle_ttl_seconds,
            max_event_bytes=settings.max_event_bytes,
            max_stream_events=settings.max_stream_events,
            max_stream_bytes=settings.max_stream_bytes,
        )
        config = HubConfig(
            block_ms=settings.read_block_ms,
            viewer_buffer=settings.viewer_buffer,
            keepalive=settings.keepalive_seconds,
        )
        try:
            async with Hub(route, event_log, config, metrics) as hub:
                app.state.redis = redis
                app.state.log = event_log
                app.state.hub = hub
                app.state.jobs = JobQueue(redis)
                yield
        finally:
            await route.aclose()
            await redis.aclose()

    app = BroadcasterApp(
        title="broadcaster",
        version="0.1.0",
        summary="Numbered events in Redis Streams, fanned out over SSE with resume.",
        lifespan=lifespan,
        # A stream id of "/" (sent as %2F) would otherwise be redirected (307) to another
        # route; the contract answers a bad id with 404.
        redirect_slashes=False,
    )
    generated_schema = app.openapi

    def openapi_schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.describe_stream_ids(
                generated_schema(), keys.STREAM_ID_RE.pattern
            )
        return app.openapi_schema

    app.openapi = openapi_schema  # type: ignore[method-assign]
    origins = [o.strip() for o in (settings.cors_origins or "").split(",") if o.strip()]
    cors: dict[str, Any] = {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["authorization", "content-type", "last-event-id"],
        "max_age": 600,
    }
    if origins:
        app.add_middleware(CORSMiddleware, **cors)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = exc.extra.pop("headers", None)
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        response.headers.update(headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors()]
        return error_response(422, "invalid_request", "the request is invalid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RedisError)
    @app.exception_handler(RedisClusterException)  # not a RedisError: a failover, say
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "unavailable", "the event store is unavailable; retry")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")

    def state(request: Request) -> tuple[EventLog, Hub]:
        return request.app.state.log, request.app.state.hub

    metrics = FrontendMetrics()
    api_keys = auth.parse_api_keys(settings.api_keys)
    secret = settings.token_secret.get_secret_value() if settings.token_secret else None

    def bearer(request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    async def require_key(request: Request, right: str) -> None:
        """With API keys configured: 401 without a known key, 403 without the right,
        429 past the per-key rate (counted in Redis, so shared by all front-ends)."""
        if not api_keys:
            return
        presented = bearer(request)
        key = auth.find_key(api_keys, presented) if presented else None
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "an API key is required: Authorization: Bearer <key>",
                headers={"www-authenticate": "Bearer"},
            )
        if right not in key.rights:
            raise ApiError(403, "forbidden", f"this API key may not {right}")
        if settings.rate_limit_per_minute:
            minute = int(time.time() // 60)
            counter = keys.ratelimit_key(key.name, minute)
            async with request.app.state.redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, keys.RATELIMIT_TTL)
                count, _ = await pipe.execute()
            if count > settings.rate_limit_per_minute:
                retry = 60 - int(time.time()) % 60
                raise ApiError(
                    429,
                    "rate_limited",
                    f"over {settings.rate_limit_per_minute} requests per minute for this key",
                    headers={"retry-after": str(retry)},
                )

    def require_viewer(request: Request, stream_id: str) -> None:
        """With a token secret configured: a valid viewer token for this very stream."""
        if secret is None:
            return
        token = bearer(request) or request.query_params.get("token")
        if not token or not auth.verify_viewer_token(secret, token, stream_id):
            raise ApiError(
                401,
                "unauthorized",
                "a valid viewer token for this stream is required (Bearer or ?token=)",
                headers={"www-authenticate": "Bearer"},
            )

    page = (Path(__file__).parent / "static" / "demo.html").read_text()

    @app.get("/", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        metrics.connections.set(hub.viewers)
        metrics.streams.set(hub.streams)
        metrics.tasks.set(len(asyncio.all_tasks()))
        metrics.gc_frozen.set(gc.get_freeze_count())
        # On a Redis error keep the last value; /readyz reports Redis trouble.
        with contextlib.suppress(*connection.REDIS_ERRORS):
            metrics.generations_queued.set(await request.app.state.jobs.depth())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses=openapi.errors(503))
    async def readyz(request: Request) -> JSONResponse:
        hub: Hub = request.app.state.hub
        if hub.closing:
            return error_response(503, "draining", "shutting down")
        try:
            await request.app.state.redis.ping()
        except connection.REDIS_ERRORS:
            return error_response(503, "unavailable", "Redis does not answer")
        return JSONResponse({"status": "ready", "viewers": hub.viewers, "streams": hub.streams})

    @app.post(
        "/v1/generations",
        status_code=202,
        openapi_extra=openapi.model_body(GenerationRequest),
        responses=openapi.errors(401, 403, 409, 413, 422, 429, 503),
    )
    async def create_generation(request: Request) -> JSONResponse:
        event_log, _ = state(request)
        await require_key(request, "generate")
        body = await _read_json(request, settings.max_body_bytes)
        try:
            req = GenerationRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(
                422,
                "invalid_request",
                "invalid generation request",
                details=_validation_details(exc),
            ) from None
        if req.max_tokens is not None and req.max_tokens > settings.max_tokens_limit:
            raise ApiError(
                422, "invalid_request", f"max_tokens is limited to {settings.max_tokens_limit}"
            )
        if await request.app.state.jobs.depth() >= settings.max_generations_in_flight:
            raise ApiError(
                503,
                "busy",
                "too many generations in flight; retry later",
                headers={"retry-after": "5"},
            )
        stream_id = req.id or new_stream_id()
        current_stream.set(stream_id)
        job = req.model_dump(exclude_none=True, exclude={"id"})
        _strict_json(job)
        job.setdefault("model", settings.default_model)
        job.setdefault("max_tokens", settings.default_max_tokens)
        if not await event_log.create_generation(stream_id, job):
            raise ApiError(409, "conflict", f"a stream with id {stream_id!r} already exists")
        await request.app.state.jobs.enqueue(stream_id)
        created: dict[str, Any] = {
            "id": stream_id,
            "status": "queued",
            "events_url": f"/v1/streams/{stream_id}/events",
            "status_url": f"/v1/generations/{stream_id}",
        }
        if secret is not None:
            token, expires = auth.mint_viewer_token(secret, stream_id, settings.token_ttl_seconds)
            created |= {"viewer_token": token, "token_expires_at": expires}
        return JSONResponse(created, status_code=202)

    @app.get("/v1/generations/{stream_id}", responses=openapi.errors(401, 404))
    async def get_generation(stream_id: str, request: Request) -> JSONResponse:
        _check_id(stream_id)
        require_viewer(request, stream_id)
        event_log, _ = state(request)
        meta = await event_log.meta(stream_id)
        if meta is None or meta.get("kind") != "generation":
            raise ApiError(404, "not_found", f"no generation {stream_id!r}")
        return JSONResponse(
            {
                "id": stream_id,
                "status": meta.get("status", "queued"),
                "last_event_id": int(meta.get("seq", 0)),
                "text": meta["text"],
                "usage": json.loads(meta["usage"]) if meta.get("usage") else None,
                "error": meta.get("error") or None,
                "created_at": _iso(meta.get("created_at")),
                "updated_at": _iso(meta.get("updated_at")),
            }
        )

    @app.post(
        "/v1/generations/{stream_id}/cancel",
        status_code=202,
        responses=openapi.errors(401, 403, 404, 409, 429),
    )
    async def cancel_generation(stream_id: str, request: Request) -> JSONResponse:
        _check_id(stream_id)
        await require_key(request, "cancel")
        event_log, _ = state(request)
        info = await event_log.info(stream_id)
        if info is None or info.kind != "generation":
            raise ApiError(404, "not_found", f"no generation {stream_id!r}")
        try:
            # The abort is appended here, at once; the worker sees the stream ended and
            # stops the model call (it polls, and its next append is refused anyway).
            await event_log.append(
                stream_id,
                [{"type": "abort", "reason": "cancelled"}],
                kind="generation",
                meta={"error": ""},
            )
        except StreamEnded:
            raise ApiError(409, "ended", f"generation {stream_id!r} has already ended") from None
        except StreamNotFound:
            raise ApiError(404, "not_found", f"no generation {stream_id!r}") from None
        metrics.appended.inc()
        return JSONResponse({"id": stream_id, "status": "cancelled"}, status_code=202)

    @app.post(
        "/v1/streams/{stream_id}/events",
        status_code=201,
        openapi_extra=openapi.PUBLISH_BODY,
        responses=openapi.errors(401, 403, 404, 409, 413, 422, 429),
    )
    async def publish(
        stream_id: str, request: Request, expected_last_event_id: int | None = None
    ) -> JSONResponse:
        """Append one event, or a list appended atomically. With
        ``?expected_last_event_id=N`` the append only happens if the stream is at seq N."""
        _check_id(stream_id)
        await require_key(request, "publish")
        event_log, _ = state(request)
        body = await _read_json(request, settings.max_body_bytes)
        events = body if isinstance(body, list) else [body]
        try:
            seq = await event_log.append(
                stream_id, events, kind="feed", expect_seq=expected_last_event_id
            )
        except EventTooLarge as exc:
            raise ApiError(413, "too_large", str(exc)) from None
        except InvalidEvent as exc:
            raise ApiError(422, "invalid_event", str(exc)) from None
        except StreamFull as exc:
            raise ApiError(413, "stream_full", str(exc), last_event_id=exc.last_seq) from None
        except StreamEnded as exc:
            raise ApiError(409, "ended", str(exc), last_event_id=exc.last_seq) from None
        except WrongKind as exc:
            raise ApiError(409, "generation", str(exc)) from None
        except StaleWriter as exc:
            raise ApiError(409, "conflict", str(exc), last_event_id=exc.last_seq) from None
        metrics.appended.inc(len(events))
        return JSONResponse({"last_event_id": seq}, status_code=201)

    @app.post(
        "/v1/streams/{stream_id}/tokens",
        openapi_extra=openapi.TOKEN_BODY,
        responses=openapi.errors(401, 403, 404, 409, 413, 422, 429),
    )
    async def mint_token(stream_id: str, request: Request) -> JSONResponse:
        """A viewer token for any stream id, for a producer's backend to hand out."""
        _check_id(stream_id)
        await require_key(request, "tokens")
        if secret is None:
            raise ApiError(409, "tokens_disabled", "no BROADCASTER_TOKEN_SECRET is configured")
        ttl = settings.token_ttl_seconds
        if await request.body():
            body = await _read_json(request, 4096)
            value = body.get("ttl_seconds", ttl) if isinstance(body, dict) else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ApiError(422, "invalid_request", 'body: {"ttl_seconds": <integer>}')
            if not 1 <= value <= settings.token_max_ttl_seconds:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"ttl_seconds must be 1..{settings.token_max_ttl_seconds}",
                )
            ttl = value
        token, expires = auth.mint_viewer_token(secret, stream_id, ttl)
        return JSONResponse({"viewer_token": token, "token_expires_at": expires})

    @app.get(
        "/v1/streams/{stream_id}/events",
        response_class=Response,
        responses={
            200: {"content": {"text/event-stream": {}}},
            204: {"description": "the resume point is the terminal event: nothing more"},
            **openapi.errors(400, 401, 404, 409, 503),
        },
        openapi_extra=openapi.LAST_EVENT_ID,
    )
    async def events(
        stream_id: str, request: Request, last_event_id: str | None = None
    ) -> Response:
        """The SSE stream, resuming after ``Last-Event-ID`` (or ``?last_event_id``)."""
        _check_id(stream_id)
        require_viewer(request, stream_id)
        event_log, hub = state(request)
        raw = request.headers.get("last-event-id")
        if raw is None:
            raw = last_event_id
        resume = sse.parse_resume_point(raw)
        if resume is None:
            raise ApiError(400, "bad_resume_point", "Last-Event-ID is not an id this server issued")
        after, tag = resume
        info = await event_log.info(stream_id, at=after if tag else None)
        if info is None:
            raise ApiError(404, "not_found", f"no stream {stream_id!r} (unknown or expired)")
        if after > info.last_seq:
            raise ApiError(
                409,
                "resume_point_ahead",
                f"resume point {after} is past the newest event {info.last_seq}: start over",
                last_event_id=info.last_seq,
            )
        if tag is not None and info.tag_at != tag:
            # The events this client saw up to ``after`` are not this stream's: Redis lost
            # writes and the stream was written again differently. Never splice.
            raise ApiError(
                409,
                "resume_point_unknown",
                f"event {after} you saw is not in this stream's history (it was lost and "
                "rewritten): start over",
                last_event_id=info.last_seq,
            )
        if info.ended and after == info.last_seq:
            return Response(status_code=204)
        if hub.viewers >= settings.max_connections:
            raise ApiError(
                503,
                "busy",
                "this front-end is at its connection limit; retry",
                headers={"retry-after": "2"},
            )
        if hub.viewers_of(stream_id) >= settings.max_viewers_per_stream:
            raise ApiError(
                503,
                "busy",
                "this stream is at its viewer limit on this front-end; retry",
                headers={"retry-after": "2"},
            )
        return SSEResponse(
            lambda writer: hub.follow(stream_id, after, info, writer),
            first=sse.retry(settings.retry_ms),
            headers=SSE_HEADERS,
            send_timeout=settings.slow_viewer_timeout,
            stream_id=stream_id,
            on_cut_off=metrics.cut_off.inc,
        )

    async def sse_response(scope: Scope, receive: Receive, send: Send) -> None:
        """``events`` with the app's exception handlers, outside FastAPI."""
        request = Request(scope, receive)
        try:
            stream_id = scope["path_params"]["stream_id"]
            response = await events(stream_id, request, request.query_params.get("last_event_id"))
        except ApiError as exc:
            response = await _api_error(request, exc)
        except (RedisError, RedisClusterException) as exc:
            response = await _redis_down(request, exc)
        except Exception as exc:
            response = await _internal(request, exc)
        del request  # not kept for the life of the stream
        await response(scope, receive, send)

    app.sse_route = CORSMiddleware(sse_response, **cors) if origins else sse_response
    return app
