"""Durable Streams at ``/v1/stream/{path}`` on real front-ends, beyond what the protocol's
own conformance suite checks (tests/clients/test_durable_conformance.py): access control
as everywhere else, the streams of events read as read-only ``application/json`` Durable
Streams (and the names a ``PUT`` may not take), offsets against SSE ids, the limits, and
the history check of an offset."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from broadcaster import mint_token
from broadcaster.auth import credentials
from broadcaster.core import keys
from broadcaster.durable.protocol import offset_of_event_id
from tests.support.procs import Proc, own_redis, read_sse, start_frontend, start_worker

pytestmark = pytest.mark.anyio

ADMIN = "admin-" + secrets.token_hex(8)
GENERATOR = "gen-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)
KEYS = ",".join([credentials.hash_key(ADMIN), credentials.hash_key(GENERATOR) + ":generate"])
JSON = {"content-type": "application/json"}


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, str]]:
    """A front-end with access control and small limits, and a worker, on a Redis of the
    module's own."""
    logs: Path = tmp_path_factory.mktemp("durable")
    redis = own_redis(logs / "redis")
    secured = start_frontend(
        redis.url,
        logs,
        "durable-secured",
        {
            "BROADCASTER_API_KEYS": KEYS,
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_RATE_LIMIT_PER_MINUTE": "30",
            "BROADCASTER_MAX_BODY_BYTES": "2048",
            "BROADCASTER_MAX_STREAM_BYTES": "4096",
            "BROADCASTER_DS_LONG_POLL_SECONDS": "0.5",
        },
    )
    worker = start_worker(redis.url, logs, "durable-worker")
    try:
        yield secured, worker, redis.url
    finally:
        worker.stop()
        secured.stop()
        redis.stop()


def token(path: str) -> str:
    return credentials.mint_viewer_token(SECRET, path, 600)[0]


async def test_writes_need_a_key_with_the_publish_right(stack: tuple[Proc, Proc, str]) -> None:
    fe = stack[0]
    url = f"{fe.url}/v1/stream/acl-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(timeout=10) as c:
        for method in ("PUT", "POST", "DELETE"):
            r = await c.request(method, url, headers=JSON, content=b"[1]")
            assert r.status_code == 401, (method, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["x-content-type-options"] == "nosniff"  # on errors too
            r = await c.request(method, url, headers=JSON | bearer(GENERATOR), content=b"[1]")
            assert r.status_code == 403, (method, r.text)
            assert r.json()["error"] == "forbidden"
        assert (await c.put(url, headers=JSON | bearer(ADMIN))).status_code == 201


async def test_reads_need_a_viewer_token_for_the_path(stack: tuple[Proc, Proc, str]) -> None:
    fe = stack[0]
    path = f"tenants/t1/acl-{secrets.token_hex(4)}"
    url = f"{fe.url}/v1/stream/{path}"
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.put(url, headers=JSON | bearer(ADMIN), content=b'{"a":1}')
        assert r.status_code == 201, r.text
        for method in ("GET", "HEAD"):
            assert (await c.request(method, url)).status_code == 401
            other = bearer(token(path + "x"))  # valid, for another path: forbidden
            assert (await c.request(method, url, headers=other)).status_code == 403
            assert (await c.request(method, url, headers=bearer(token(path)))).status_code == 200
        # As an EventSource or a Durable Streams client that cannot set headers would.
        r = await c.get(url, params={"offset": "-1", "token": token(path)})
        assert r.status_code == 200 and r.json() == [{"a": 1}]
        # A fork of a stream needs a token for the source as well as the key.
        fork = f"{fe.url}/v1/stream/{path}-fork"
        r = await c.put(fork, headers=bearer(ADMIN) | {"stream-forked-from": f"/v1/stream/{path}"})
        assert r.status_code == 401, r.text


async def test_limits_are_the_deployments(stack: tuple[Proc, Proc, str]) -> None:
    fe = stack[0]
    path = f"limits-{secrets.token_hex(4)}"
    url = f"{fe.url}/v1/stream/{path}"
    headers = {"content-type": "text/plain"} | bearer(ADMIN)
    async with httpx.AsyncClient(timeout=10) as c:
        assert (await c.put(url, headers=headers)).status_code == 201
        r = await c.post(url, headers=headers, content=b"x" * 3000)
        assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
        for _ in range(2):
            assert (await c.post(url, headers=headers, content=b"y" * 2000)).status_code == 204
        r = await c.post(url, headers=headers, content=b"z" * 200)
        assert r.status_code == 413 and r.json()["error"] == "stream_full", r.text
        # Full, but it can still be closed.
        r = await c.post(url, headers=bearer(ADMIN) | {"stream-closed": "true"})
        assert r.status_code == 204 and r.headers["stream-closed"] == "true"
        read = await c.get(url, params={"offset": "-1"}, headers=bearer(token(path)))
        assert read.content == b"y" * 4000 and read.headers["stream-closed"] == "true"


async def test_the_rate_limit_counts_durable_writes(tmp_path: Path) -> None:
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(
        redis.url,
        tmp_path,
        "durable-rate",
        {"BROADCASTER_API_KEYS": KEYS, "BROADCASTER_RATE_LIMIT_PER_MINUTE": "5"},
    )
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            url = f"{fe.url}/v1/stream/rate-{secrets.token_hex(4)}"
            answers = [
                (await c.put(url, headers=JSON | bearer(ADMIN))).status_code for _ in range(7)
            ]
        assert answers[:5] == [201, 200, 200, 200, 200], answers
        assert answers[5:] == [429, 429], answers
    finally:
        fe.stop()
        redis.stop()


async def test_a_generation_is_a_read_only_json_durable_stream(
    stack: tuple[Proc, Proc, str],
) -> None:
    fe = stack[0]
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            fe.url + "/v1/generations", json={"prompt": "durable"}, headers=bearer(ADMIN)
        )
        assert r.status_code == 202, r.text
        gid, viewer = r.json()["id"], bearer(r.json()["viewer_token"])
        sse = await read_sse(c, f"{fe.url}/v1/streams/{gid}/events", headers=viewer)
        events = [e for e in sse.events if e.id is not None]
        url = f"{fe.url}/v1/stream/{gid}"
        read = await c.get(url, params={"offset": "-1"}, headers=viewer)
        assert read.status_code == 200
        assert read.headers["content-type"] == "application/json"
        assert read.json() == [e.json() for e in events]
        assert read.headers["stream-closed"] == "true"
        # Offsets are SSE ids written another way.
        assert read.headers["stream-next-offset"] == offset_of_event_id(str(events[-1].id))
        middle = events[len(events) // 2]
        rest = await c.get(
            url, params={"offset": offset_of_event_id(str(middle.id))}, headers=viewer
        )
        later = [e.json() for e in events if _seq(e.id) > _seq(middle.id)]
        assert rest.json() == later
        head = await c.head(url, headers=viewer)
        assert head.status_code == 200 and head.headers["allow"] == "GET, HEAD"
        # Writes: 405 for appends and deletes, 409 for a PUT of its name.
        for method in ("POST", "DELETE"):
            r = await c.request(method, url, headers=JSON | bearer(ADMIN), content=b"{}")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", (method, r.text)
        r = await c.put(url, headers=JSON | bearer(ADMIN))
        assert r.status_code == 409, r.text


async def test_a_job_feed_is_one_too_and_a_durable_stream_is_not_a_feed(
    stack: tuple[Proc, Proc, str],
) -> None:
    fe = stack[0]
    feed = f"job-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(timeout=30) as c:
        events = [{"type": "data-progress", "pct": 50}, {"type": "finish"}]
        r = await c.post(f"{fe.url}/v1/streams/{feed}/events", json=events, headers=bearer(ADMIN))
        assert r.status_code == 201, r.text
        read = await c.get(
            f"{fe.url}/v1/stream/{feed}", params={"offset": "-1"}, headers=bearer(token(feed))
        )
        assert read.json() == events and read.headers["stream-closed"] == "true"
        # A Durable Stream's name is not a job feed's.
        ds = f"ds-{secrets.token_hex(4)}"
        assert (
            await c.put(f"{fe.url}/v1/stream/{ds}", headers=JSON | bearer(ADMIN))
        ).status_code == 201
        r = await c.post(
            f"{fe.url}/v1/streams/{ds}/events", json={"type": "x"}, headers=bearer(ADMIN)
        )
        assert r.status_code == 409, r.text
        r = await c.get(f"{fe.url}/v1/streams/{ds}/events", headers=bearer(token(ds)))
        assert r.status_code == 409 and r.json()["error"] == "durable_stream", r.text


async def test_an_offset_of_another_history_is_gone(stack: tuple[Proc, Proc, str]) -> None:
    """Redis lost the stream's writes and it was written again differently: an offset of
    the old history is refused (410), never read as if it were the new one's."""
    fe, _, redis_url = stack
    path = f"rewritten-{secrets.token_hex(4)}"
    url = f"{fe.url}/v1/stream/{path}"
    headers = {"content-type": "text/plain"} | bearer(ADMIN)
    viewer = bearer(token(path))
    async with httpx.AsyncClient(timeout=10) as c:
        first = (await c.put(url, headers=headers, content=b"first")).headers["stream-next-offset"]
        old = (await c.post(url, headers=headers, content=b"second")).headers["stream-next-offset"]
        client = redis_sync.Redis.from_url(redis_url)
        try:
            client.delete(*keys.ds_keys(keys.ds_name(path)))  # what a lost write leaves
        finally:
            client.close()
        await c.put(url, headers=headers, content=b"other")
        await c.post(url, headers=headers, content=b"history")
        # At the tail, and behind it (data follows: never spliced onto the old history).
        for offset in (old, first):
            for live in ({}, {"live": "long-poll"}, {"live": "sse"}):
                r = await c.get(url, params={"offset": offset, **live}, headers=viewer)
                assert r.status_code == 410 and r.json()["error"] == "offset_gone", r.text
        r = await c.get(url, params={"offset": "-1"}, headers=viewer)
        assert r.content == b"otherhistory"


async def test_a_live_reader_is_ended_when_its_stream_is_deleted(
    stack: tuple[Proc, Proc, str],
) -> None:
    fe = stack[0]
    path = f"deleted-{secrets.token_hex(4)}"
    url = f"{fe.url}/v1/stream/{path}"
    async with httpx.AsyncClient(timeout=10) as c:
        await c.put(url, headers=JSON | bearer(ADMIN), content=b"[1]")

        async def read() -> bytes:
            params = {"offset": "-1", "live": "sse"}
            async with c.stream("GET", url, params=params, headers=bearer(token(path))) as r:
                return b"".join([chunk async for chunk in r.aiter_raw()])

        reading = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        assert (await c.delete(url, headers=bearer(ADMIN))).status_code == 204
        body = await asyncio.wait_for(reading, 5)
        assert b"data:[1]" in body
        r = await c.get(url, params={"offset": "-1"}, headers=bearer(token(path)))
        assert r.status_code == 404, r.text


def _seq(event_id: str | None) -> int:
    return int(str(event_id).split(".")[0])


ACTIVE = b"<script>fetch('/v1/generations',{method:'POST'})</script><svg onload=alert(1)/>"
RENDERED_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "application/pdf",
    "text/csv",
    "image/png",
)
INERT_TYPES = ("application/json", "text/plain", "application/octet-stream")


async def test_stored_bytes_never_run_on_the_apis_origin(stack: tuple[Proc, Proc, str]) -> None:
    """A Durable Stream created as ``text/html`` (or SVG, XML, anything but JSON, plain
    text and octet-stream) is served back in its type, byte for byte, but sandboxed
    (``Content-Security-Policy: sandbox``: no script, no access to the origin where the
    demo page keeps its keys) and as an attachment; every read carries ``nosniff``:
    catch-up, ``offset=now``, long-poll, HEAD, the PUT's answer, 304, 204 and SSE."""
    fe = stack[0]
    prefix = f"active-{secrets.token_hex(4)}-"
    # Its own rate count (a token's), apart from the module's key.
    writer = bearer(mint_token(SECRET, publish=[prefix + "*"], ttl_seconds=600))
    viewer = bearer(mint_token(SECRET, read=[prefix + "*"], ttl_seconds=600))
    async with httpx.AsyncClient(timeout=10) as c:
        for i, ct in enumerate(RENDERED_TYPES + INERT_TYPES + ("Text/HTML; charset=utf-8",)):
            url = f"{fe.url}/v1/stream/{prefix}{i}"
            body = b'{"a":1}' if ct == "application/json" else ACTIVE
            put = await c.put(url, headers=writer | {"content-type": ct}, content=body)
            assert put.status_code == 201, (ct, put.text)
            stored = ct.split(";")[0].lower()
            answers = {
                "put": put,
                "catch-up": await c.get(url, params={"offset": "-1"}, headers=viewer),
                "now": await c.get(url, params={"offset": "now"}, headers=viewer),
                "long-poll": await c.get(
                    url, params={"offset": "-1", "live": "long-poll"}, headers=viewer
                ),
                "head": await c.head(url, headers=viewer),
            }
            assert answers["catch-up"].content == (b"[" + body + b"]" if "json" in ct else body)
            assert answers["long-poll"].content == answers["catch-up"].content
            for what, r in answers.items():
                assert r.status_code in (200, 201), (ct, what, r.text)
                assert r.headers["content-type"] == stored, (ct, what)
                assert r.headers["x-content-type-options"] == "nosniff", (ct, what)
                csp = r.headers.get("content-security-policy")
                disposition = r.headers.get("content-disposition")
                if stored in INERT_TYPES:
                    assert csp is None and disposition is None, (ct, what, r.headers)
                else:
                    assert csp is not None and "sandbox" in csp.split(";")[0], (ct, what)
                    assert "default-src 'none'" in csp, (ct, what)
                    assert disposition == "attachment", (ct, what)
            if stored not in ("text/html", "text/plain"):
                continue  # the answers with no body of their own: once is enough
            etag = answers["catch-up"].headers["etag"]
            r = await c.get(url, params={"offset": "-1"}, headers=viewer | {"if-none-match": etag})
            assert r.status_code == 304 and r.headers["x-content-type-options"] == "nosniff"
            tail = answers["catch-up"].headers["stream-next-offset"]
            r = await c.get(url, params={"offset": tail, "live": "long-poll"}, headers=viewer)
            assert r.status_code == 204 and r.headers["x-content-type-options"] == "nosniff"
            params = {"offset": "-1", "live": "sse"}
            async with c.stream("GET", url, params=params, headers=viewer) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                assert r.headers["x-content-type-options"] == "nosniff"
                assert "content-disposition" not in r.headers
