"""``POST /v1/tokens/revoke`` on two real front-ends and Redis: by ``jti`` or by ``sub``,
the open responses of those tokens end on both front-ends (a UI-message stream with
``data-token-expired``, reason ``revoked``), and the tokens are refused (401
``token_revoked``) there and on a front-end started after it, while other tokens, and a
token of the same subject minted after the revocation, go on; only an API key with the
``admin`` right revokes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from broadcaster.auth import credentials, tokens
from tests.support.polling import until
from tests.support.procs import parse_sse, start_frontend
from tests.support.stacks import Stack, start_stack
from tests.support.token_ends import ADMIN, ENV, SECRET, Opened, bearer, open_response

pytestmark = pytest.mark.anyio

PUBLISHER = "publisher-" + secrets.token_hex(8)
"""A key with every producer's right but ``admin``."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = ENV["BROADCASTER_API_KEYS"] + "," + credentials.hash_key(PUBLISHER)
    s = start_stack(
        tmp_path_factory.mktemp("revoke"),
        "revoke",
        None,
        frontend_env=ENV | {"BROADCASTER_API_KEYS": keys},
        frontends=2,
    )
    yield s
    s.stop()


def token(sid: str, sub: str | None, *, jti: bool = True) -> str:
    if jti:
        return tokens.mint_token(SECRET, read=[sid], sub=sub, ttl_seconds=600)
    now = int(time.time())  # as another issuer mints it: no jti
    claims = {"iat": now, "exp": now + 600, "sub": sub, tokens.CLAIM: {"read": [sid]}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def stream(stack: Stack) -> str:
    sid = "revoked-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=stack.frontend.url, headers=bearer(ADMIN)) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "data-n", "i": 0})
        assert r.status_code == 201, r.text
    return sid


async def watch(url: str, sid: str, tok: str) -> Opened:
    client = httpx.AsyncClient(base_url=url, timeout=60)
    opened = await open_response(client, "GET", f"/v1/streams/{sid}/events", headers=bearer(tok))
    assert opened.status == 200, opened
    opened.done.add_done_callback(lambda _: asyncio.ensure_future(client.aclose()))
    await until(lambda: b"\n\n" in opened.raw, "the viewer's first event")
    return opened


async def revoke(url: str, body: dict[str, Any], key: str = ADMIN) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        return await c.post("/v1/tokens/revoke", json=body, headers=bearer(key))


def revoked_end(opened: Opened) -> None:
    last = parse_sse(opened.raw)[0][-1]
    assert (last.event, last.id) == ("data-token-expired", None), opened
    assert last.json()["data"] == {"reason": "revoked"}
    assert b"[DONE]" not in opened.raw


async def refused(url: str, sid: str, tok: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.get(f"/v1/streams/{sid}/events", headers=bearer(tok))
        assert r.status_code == 401, r.text
        return str(r.json()["error"])


async def test_a_token_revoked_by_id_ends_on_every_front_end(stack: Stack) -> None:
    one, two = (fe.url for fe in stack.frontends)
    sid = await stream(stack)
    alice, bob = token(sid, "alice"), token(sid, "bob")
    opened = [await watch(one, sid, alice), await watch(two, sid, alice)]
    other = await watch(one, sid, bob)
    jti = jwt.decode(alice, options={"verify_signature": False})["jti"]
    asked = time.time()
    r = await revoke(two, {"jti": jti})
    assert r.status_code == 200 and r.json()["jti"] == jti, r.text
    await asyncio.wait_for(asyncio.gather(*(o.done for o in opened)), 10)
    print("ended after the revocation (s):", [round(o.ended_at - asked, 3) for o in opened])
    for o in opened:
        revoked_end(o)
    for url in (one, two):
        assert await refused(url, sid, alice) == "token_revoked"
    # Another token of the stream goes on, and still hears the stream.
    assert not other.done.done()
    async with httpx.AsyncClient(base_url=one, headers=bearer(ADMIN)) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "finish"})
        assert r.status_code == 201
    await asyncio.wait_for(other.done, 10)
    assert other.raw.endswith(b"data: [DONE]\n\n"), other


async def test_a_subjects_tokens_are_revoked_those_minted_after_are_not(
    stack: Stack, tmp_path: Any
) -> None:
    one, two = (fe.url for fe in stack.frontends)
    sid = await stream(stack)
    with_id, without_id = token(sid, "carol"), token(sid, "carol", jti=False)
    opened = [await watch(one, sid, with_id), await watch(two, sid, without_id)]
    r = await revoke(one, {"sub": "carol"})
    assert r.status_code == 200 and r.json()["sub"] == "carol", r.text
    await asyncio.wait_for(asyncio.gather(*(o.done for o in opened)), 10)
    for o in opened:
        revoked_end(o)
    for url in (one, two):
        for tok in (with_id, without_id):
            assert await refused(url, sid, tok) == "token_revoked"
    # A front-end started now knows it too (it reads the revocations at its start).
    late = start_frontend(stack.redis.url, tmp_path, "revoke-late", ENV)
    try:
        assert await refused(late.url, sid, with_id) == "token_revoked"
    finally:
        late.stop()
    # A token of carol's issued after the revocation (its iat a later second) opens.
    revoked_at = time.time()
    await until(lambda: time.time() >= int(revoked_at) + 1, "the next second")
    again = token(sid, "carol")
    fresh = await watch(two, sid, again)
    assert not fresh.done.done()
    fresh.done.cancel()


async def test_only_an_admin_key_revokes_and_bodies_are_strict(stack: Stack) -> None:
    url = stack.frontend.url
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.post("/v1/tokens/revoke", json={"sub": "dave"})
        assert r.status_code == 401, r.text
    assert (await revoke(url, {"sub": "dave"}, PUBLISHER)).status_code == 403
    viewer = token("anything", "dave")
    assert (await revoke(url, {"sub": "dave"}, viewer)).status_code == 403  # never a token's
    for body in ({}, {"jti": "a", "sub": "b"}, {"sub": ""}, {"sub": "x", "extra": 1},
                 {"jti": 7}, {"sub": "s" * 257}):  # fmt: skip
        r = await revoke(url, body)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", (body, r.text)
