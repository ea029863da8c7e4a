"""A stream of events (here a job feed) read as a Durable Stream closes at its terminal
event, however the reader reads: its ``live=sse`` response ends with a ``control`` event
saying ``streamClosed``, both when the terminal event arrives while it waits (the live
path) and when the stream had ended before it came (the history path); a long-poll woken
by the terminal event says ``Stream-Closed: true``. Real processes (the ``deployment``
fixture)."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest

from broadcaster.clients.publisher import Publisher
from tests.support.procs import Deployment

pytestmark = pytest.mark.anyio


def controls(body: bytes) -> list[dict[str, object]]:
    out = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"event: control\ndata:"):
            out.append(json.loads(block.split(b"data:", 1)[1]))
    return out


async def read_sse(
    client: httpx.AsyncClient, url: str, *, then: Publisher | None = None, sid: str = ""
) -> bytes:
    """The whole ``live=sse`` response; once it is up to date, the feed's ``finish`` is
    published with ``then`` (if given)."""
    body = b""
    finished = then is None
    async with asyncio.timeout(10), client.stream("GET", url) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            body += chunk
            if not finished and b'"upToDate":true' in body:
                finished = True
                assert then is not None
                await then.publish(sid, {"type": "finish"})
    return body


async def test_a_feed_read_over_sse_closes_at_its_terminal_event(deployment: Deployment) -> None:
    base = deployment.frontends[0].url
    sid = f"ds-closes-{secrets.token_hex(4)}"
    async with Publisher.from_url(deployment.redis_url) as pub, httpx.AsyncClient() as client:
        await pub.publish(sid, {"type": "data-x", "n": 1})
        url = f"{base}/v1/stream/{sid}?offset=-1&live=sse"
        live = await read_sse(client, url, then=pub, sid=sid)
        *_, last = controls(live)
        assert last.get("streamClosed") is True, live
        assert b'[{"type":"finish"}]' in live
        # the stream has ended: a new reader gets its history, closed, and the end
        again = await read_sse(client, url)
        (control,) = controls(again)
        assert control.get("streamClosed") is True, again
        assert control["streamNextOffset"] == last["streamNextOffset"]


async def test_a_long_poll_woken_by_the_terminal_event_says_closed(
    deployment: Deployment,
) -> None:
    base = deployment.frontends[0].url
    sid = f"ds-closes-{secrets.token_hex(4)}"
    async with Publisher.from_url(deployment.redis_url) as pub, httpx.AsyncClient() as client:
        await pub.publish(sid, {"type": "data-x", "n": 1})
        head = await client.head(f"{base}/v1/stream/{sid}")
        tail = head.headers["stream-next-offset"]
        poll = asyncio.ensure_future(
            client.get(f"{base}/v1/stream/{sid}?offset={tail}&live=long-poll", timeout=30)
        )
        await asyncio.sleep(0.5)  # the poll waits at the tail
        await pub.publish(sid, {"type": "finish"})
        r = await poll
    assert r.status_code == 200, r.text
    assert r.json() == [{"type": "finish"}]
    assert r.headers.get("stream-closed") == "true", r.headers
