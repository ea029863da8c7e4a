"""The app's own error answers for what no route handles (``http/errors.py``): JSON like
every other error, with the headers Starlette gives them."""

from __future__ import annotations

import httpx
import pytest

from broadcaster.http.app import create_app
from broadcaster.http.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_method_the_path_does_not_take_is_405_with_allow() -> None:
    app = create_app(Settings(), "redis://127.0.0.1:1")  # routing answers before Redis
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.request("PATCH", "/v1/streams/job-1/events")
        assert r.status_code == 405, r.text
        assert r.json()["error"] == "method_not_allowed"
        assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        r = await client.request("PUT", "/healthz")
        assert r.status_code == 405 and "GET" in r.headers["allow"], r.headers
        r = await client.get("/no/such/path")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert "allow" not in r.headers
