"""What the tests of token expiry and revocation share: the front-ends' settings (a
secret, an admin key, a one-second leeway), and an open response read in the
background, with the moment it ended."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from broadcaster.auth import credentials
from tests.support.procs import parse_sse

SECRET = "token-ends-test-secret-0123456789abcdef"
ADMIN = "admin-" + secrets.token_hex(8)
LEEWAY = 1
ENV = {
    "BROADCASTER_TOKEN_SECRET": SECRET,
    "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN)
    + ":generate+cancel+publish+tokens+read+admin",
    "BROADCASTER_TOKEN_LEEWAY_SECONDS": str(LEEWAY),
    "BROADCASTER_SUBMIT_RATE_PER_MINUTE": "0",
    "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
}


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def user(text: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


@dataclass
class Opened:
    """A response read to its end in the background: its status and headers once they
    came, its body so far, and when it ended (``done``)."""

    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    raw: bytes = b""
    ended_at: float = 0.0
    done: asyncio.Task[None] = field(init=False)

    def first_id(self) -> str:
        ids = [e.id for e in parse_sse(self.raw[: self.raw.rfind(b"\n\n") + 2])[0] if e.id]
        assert ids, self.raw
        return ids[0]

    def __repr__(self) -> str:
        return f"Opened({self.status}, ended_at={self.ended_at:.2f}, {self.raw[-600:]!r})"


async def open_response(
    client: httpx.AsyncClient, method: str, url: str, *, stop: bytes | None = None, **kw: Any
) -> Opened:
    """``method url``, its head awaited, its body read in the background to its end (or
    until it holds ``stop``)."""
    opened = Opened()
    head: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        try:
            async with client.stream(method, url, **kw) as resp:
                opened.status, opened.headers = resp.status_code, resp.headers
                head.set_result(None)
                async for chunk in resp.aiter_raw():
                    opened.raw += chunk
                    if stop is not None and stop in opened.raw:
                        break
        finally:
            opened.ended_at = time.time()
            if not head.done():
                head.set_result(None)

    opened.done = asyncio.create_task(read())
    await head
    return opened


async def chat_turn(
    client: httpx.AsyncClient, chat: str, text: str, token: str | None, *, read_all: bool = False
) -> Opened:
    """A chat's next turn (``POST /v1/chat``), with ``token`` (else the client's own
    credential): its answer, open, or read whole (``read_all``)."""
    body = {"id": chat, "messages": [user(text, "m-" + secrets.token_hex(4))], "max_tokens": 64}
    headers = bearer(token) if token else {}
    opened = await open_response(client, "POST", "/v1/chat", json=body, headers=headers)
    assert opened.status == 200, await _body(opened)
    if read_all:
        await opened.done
    return opened


async def _body(opened: Opened) -> bytes:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(opened.done), 5)
    return opened.raw
