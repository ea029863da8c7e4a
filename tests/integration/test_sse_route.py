"""The SSE route is served below FastAPI's middleware stack (``BroadcasterApp``), to keep
an open viewer's memory down. It must answer exactly as the FastAPI route it bypasses:
the same statuses, bodies and headers (auth, CORS, resume points, errors), against a
real Redis. Each request is made twice, through the fast path and through FastAPI."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from broadcaster.auth import credentials
from broadcaster.core.embedded import free_port
from broadcaster.core.eventlog import EventLog
from broadcaster.http.app import BroadcasterApp, create_app
from broadcaster.http.settings import Settings

pytestmark = pytest.mark.anyio

SECRET = secrets.token_hex(16)
ORIGIN = "https://app.example"
HEADERS = ("content-type", "www-authenticate", "access-control-allow-origin", "retry-after")


class CountRequests:
    """A middleware on FastAPI's stack: counts the requests that went through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            through_fastapi.append(scope["path"])
        await self.app(scope, receive, send)


through_fastapi: list[str] = []


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[BroadcasterApp]:
    # No jitter in ``retry:``: both paths' answers are compared byte for byte.
    settings = Settings(token_secret=SECRET, cors_origins=ORIGIN, retry_jitter_ms=0)  # type: ignore[arg-type]
    application = create_app(settings, redis_url)
    application.add_middleware(CountRequests)
    async with application.router.lifespan_context(application):
        yield application


async def fetch(app: BroadcasterApp, path: str, headers: dict[str, str]) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get(path, headers=headers)
    return {
        "status": r.status_code,
        "body": r.text,
        **{h: r.headers.get(h) for h in HEADERS},
    }


async def both_ways(app: BroadcasterApp, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The answer through the fast path, checked equal to FastAPI's own route's."""
    fast_route = app.sse_route
    through_fastapi.clear()
    fast = await fetch(app, path, headers)
    assert through_fastapi == [], "the SSE route went through FastAPI's middleware stack"
    app.sse_route = None
    try:
        slow = await fetch(app, path, headers)
    finally:
        app.sse_route = fast_route
    assert through_fastapi == [path.partition("?")[0]], "with sse_route unset FastAPI serves it"
    assert fast == slow, f"GET {path} {headers}"
    return fast


async def test_the_fast_sse_route_answers_as_fastapi_does(app: BroadcasterApp) -> None:
    log: EventLog = app.state.log
    sid = "route-" + secrets.token_hex(4)
    await log.append(sid, [{"type": "progress", "data": {"n": i}} for i in range(3)], kind="feed")
    await log.append(sid, [{"type": "finish", "data": {}}], kind="feed")
    token, _ = credentials.mint_viewer_token(SECRET, sid, 60)
    other, _ = credentials.mint_viewer_token(SECRET, "not-" + sid, 60)
    ok = {"authorization": f"Bearer {token}", "origin": ORIGIN}
    info = await log.info(sid, at=2)
    assert info is not None

    whole = await both_ways(app, f"/v1/streams/{sid}/events", ok)
    assert whole["status"] == 200 and whole["content-type"].startswith("text/event-stream")
    assert whole["access-control-allow-origin"] == ORIGIN
    assert whole["body"].count("\nid: ") == 4 and whole["body"].endswith("data: [DONE]\n\n")

    rest = await both_ways(app, f"/v1/streams/{sid}/events", {**ok, "last-event-id": "2"})
    assert rest["status"] == 200 and rest["body"].count("\nid: ") == 2
    by_query = await both_ways(app, f"/v1/streams/{sid}/events?last_event_id=2", ok)
    assert by_query["body"] == rest["body"]
    tagged = await both_ways(
        app, f"/v1/streams/{sid}/events?token={token}&last_event_id=2.{info.tag_at}", {}
    )
    assert tagged["body"] == rest["body"]

    cases = [
        ({**ok, "last-event-id": "4"}, 204, ""),
        ({**ok, "last-event-id": "9"}, 409, "resume_point_ahead"),
        ({**ok, "last-event-id": "2.00000000"}, 409, "resume_point_unknown"),
        ({**ok, "last-event-id": "two"}, 400, "bad_resume_point"),
        ({"origin": ORIGIN}, 401, "unauthorized"),
        ({"authorization": f"Bearer {other}"}, 403, "forbidden"),
        ({"authorization": f"Bearer {token}x"}, 401, "unauthorized"),
        ({"authorization": f"Bearer {token}", "origin": "https://evil.example"}, 200, "[DONE]"),
    ]
    for headers, status, text in cases:
        got = await both_ways(app, f"/v1/streams/{sid}/events", headers)
        assert got["status"] == status and text in got["body"], (headers, got)
        allowed = headers.get("origin") == ORIGIN
        assert (got["access-control-allow-origin"] == ORIGIN) is allowed, (headers, got)
    unknown = "gone-" + secrets.token_hex(4)
    token_unknown, _ = credentials.mint_viewer_token(SECRET, unknown, 60)
    got = await both_ways(
        app, f"/v1/streams/{unknown}/events", {"authorization": f"Bearer {token_unknown}"}
    )
    assert got["status"] == 404 and "not_found" in got["body"]
    got = await both_ways(app, "/v1/streams/" + "x" * 300 + "/events", ok)
    assert got["status"] == 404 and "not_found" in got["body"]


async def test_the_fast_sse_route_says_503_when_redis_is_down() -> None:
    settings = Settings()
    app = create_app(settings, f"redis://127.0.0.1:{free_port()}")
    app.add_middleware(CountRequests)
    async with app.router.lifespan_context(app):
        got = await both_ways(app, "/v1/streams/any/events", {})
    assert got["status"] == 503 and "unavailable" in got["body"]
    assert "127.0.0.1" not in got["body"], "no Redis details in the answer"
