"""The AG-UI routes' access is the chat routes' and the stream route's: with API keys and
tokens configured, a run needs a key with ``generate`` (or a chat token), a stop
``cancel``, a connect ``read`` (a key that may only generate may not), and a
generation's AG-UI view a viewer token. An
in-process front-end on a real Redis."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.support.inprocess import serving

pytestmark = pytest.mark.anyio

KEY = "agui-test-key-1"
READER = "agui-test-reader-1"
SECRET = "agui-test-secret-0123456789abcdef0123456789"
RUN = {
    "threadId": "agui-access-1",
    "runId": "r1",
    "messages": [{"id": "u1", "role": "user", "content": "hello"}],
}


async def test_the_agui_routes_take_the_chat_routes_access(redis_url: str) -> None:
    entry = f"sha256:{hashlib.sha256(KEY.encode()).hexdigest()}:generate"
    entry += f",sha256:{hashlib.sha256(READER.encode()).hexdigest()}:read"
    env = {"BROADCASTER_API_KEYS": entry, "BROADCASTER_TOKEN_SECRET": SECRET}
    async with serving(redis_url, env) as front:
        key = {"authorization": f"Bearer {KEY}"}
        base = f"http://127.0.0.1:{front.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            run = "/v1/agui/agent/default/run"
            assert (await client.post(run, json=RUN)).status_code == 401
            connect = "/v1/agui/agent/default/connect"
            assert (await client.post(connect, json=RUN)).status_code == 401
            assert (await client.post(connect, json=RUN, headers=key)).status_code == 403
            reader = {"authorization": f"Bearer {READER}"}
            empty = await client.post(connect, json=RUN, headers=reader)
            # No run on the thread yet: an empty stream (CopilotKit hangs on a 204).
            assert empty.status_code == 200 and empty.content == b""
            stop = "/v1/agui/agent/default/stop/agui-access-1"
            assert (await client.post(stop)).status_code == 401
            assert (await client.post(stop, headers=key)).status_code == 403  # no cancel
            view = "/v1/agui/generations/agui-access-gen/events"
            assert (await client.get(view)).status_code == 401
            bad = await client.post(run, json={**RUN, "threadId": "no spaces"}, headers=key)
            assert bad.status_code == 422 and "threadId" in bad.text
            assert (await client.get("/v1/agui/info")).status_code == 200
