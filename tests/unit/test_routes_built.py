"""FastAPI builds an included router's routes on the first request that walks past them;
the front-end serves its routes as their modules' import built them (none included), so
that no request's turn of the event loop builds them, and each route's first check is
``no_control_in_path``."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import fastapi.dependencies.utils
import fastapi.routing
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from broadcaster.http.app import NO_ROUTE, create_app
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import no_control_in_path


def _scope(method: str, path: str) -> dict[str, Any]:
    return {**NO_ROUTE, "method": method, "path": path, "query_string": b""}


def _builds(app: FastAPI, method: str, path: str) -> int:
    """How many dependency trees matching a request to ``path`` builds."""
    built: list[object] = []
    real = fastapi.dependencies.utils.get_dependant

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("call"))
        return real(*args, **kwargs)

    with patch.object(fastapi.routing, "get_dependant", counted):
        for route in app.router.routes:
            match, _ = route.matches(_scope(method, path))
            if match.name == "FULL":
                break
    return len(built)


def test_fastapi_builds_an_included_routers_routes_on_the_first_request() -> None:
    router = APIRouter()

    @router.post("/late")
    async def late(n: int) -> int:
        return n

    app = FastAPI()
    app.include_router(router)
    assert _builds(app, "POST", "/late") > 0
    assert _builds(app, "POST", "/late") == 0


def test_the_front_ends_routes_are_built_before_any_request() -> None:
    app = create_app(Settings(), "redis://127.0.0.1:1")
    for method, path in [
        ("POST", "/v1/chat"),
        ("POST", "/v1/agui/agent/default/run"),
        ("POST", "/v1/streams/s/events"),
        ("POST", "/v1/generations"),
        ("GET", "/healthz"),
        ("GET", "/nowhere"),
    ]:
        assert _builds(app, method, path) == 0, path


def test_every_route_checks_its_path_first() -> None:
    app = create_app(Settings(), "redis://127.0.0.1:1")
    routes = [route for route in app.router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 40  # (besides FastAPI's own: the OpenAPI document and its pages)
    for route in routes:
        assert route.dependant.dependencies[0].call is no_control_in_path, route.path
