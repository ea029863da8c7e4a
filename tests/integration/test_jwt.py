"""JWTs on real front-ends: tokens signed with PyJWT (HS256 under the secret; RS256, ES256
and EdDSA under keys of a JWKS served over HTTP from 127.0.0.1 by the test, or in a file)
open each kind of route; every bad token is refused (401: not valid here; 403: valid but
not for this); the JWKS rotates without a restart, by URL and by file; unknown ``kid``s
fetch the JWKS at most once per interval; legacy tokens work until turned off. Tokens
minted by Node's ``jose``: tests/clients/test_jwt_jose.py. docs/security.md says what each
rule is."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from broadcaster import mint_token
from broadcaster.auth import credentials
from broadcaster.core.embedded import EmbeddedRedis
from tests.support.jwt_keys import (
    JwksServer,
    SigningKey,
    claims,
    hmac_with,
    new_key,
    serve_jwks,
    unsigned,
)
from tests.support.jwt_keys import jwks as jwks_doc
from tests.support.polling import poll
from tests.support.procs import Proc, read_sse, start_frontend

pytestmark = pytest.mark.anyio

ADMIN = "admin-" + secrets.token_hex(8)
SECRET = secrets.token_hex(32)
AUDIENCE = "https://broadcaster.test"
KEYS = {alg: new_key(alg, f"{alg.lower()}-1") for alg in ("RS256", "ES256", "EdDSA")}
JSON = {"content-type": "application/json"}


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def signed(key: SigningKey, ttl: float = 60, **fields: Any) -> str:
    """A token of ``key`` for this deployment's audience."""
    return key.sign(claims(ttl, aud=AUDIENCE, **fields))


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    """The identity provider's JWKS, on 127.0.0.1."""
    with serve_jwks(jwks_doc(*KEYS.values())) as server:
        yield server


@pytest.fixture(scope="module")
def frontend(
    idle_redis: EmbeddedRedis, idp: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    """API keys, the HS256 secret, the JWKS by URL (fetched again for every unknown kid:
    the rotation test must not wait), an audience, and legacy tokens turned on."""
    proc = start_frontend(
        idle_redis.url,
        tmp_path_factory.mktemp("jwt"),
        "frontend-jwt",
        env={
            "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_JWKS_URL": idp.url,
            "BROADCASTER_JWKS_MIN_INTERVAL_SECONDS": "0",
            "BROADCASTER_TOKEN_AUDIENCE": AUDIENCE,
            "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
            "BROADCASTER_LEGACY_TOKENS": "true",
        },
    )
    yield proc
    proc.stop()


@contextlib.asynccontextmanager
async def watching(client: httpx.AsyncClient, url: str) -> AsyncIterator[None]:
    """An SSE viewer held open for the block."""
    opened = asyncio.Event()

    async def read() -> None:
        async with client.stream("GET", url) as r:
            assert r.status_code == 200
            opened.set()
            async for _ in r.aiter_raw():
                pass

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


# --- accepted, on every kind of route ---


async def test_feeds_with_a_publishing_and_reading_token_and_no_api_key(frontend: Proc) -> None:
    """A backend hands a browser one RS256 token for its own feeds: it publishes, reads
    them over SSE and sees itself among the viewers, with no API key."""
    sid = "jobs-user42-" + secrets.token_hex(4)
    token = signed(KEYS["RS256"], publish=["jobs-user42-*"], read=["jobs-user42-*"], sub="user-42")
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        url = f"/v1/streams/{sid}/events"
        r = await c.post(
            url, json={"type": "data-progress", "data": {"n": 1}}, headers=bearer(token)
        )
        assert r.status_code == 201, r.text
        got = await read_sse(c, f"{url}?token={token}", stop_after=1)
        assert got.status == 200 and got.ids == [1]
        async with watching(c, f"{url}?token={token}"):

            async def named() -> bool:
                r = await c.get(f"/v1/streams/{sid}/viewers", headers=bearer(token))
                assert r.status_code == 200, r.text
                return bool(r.json()["subjects"] == ["user-42"])

            await poll(named, "the token's sub among the viewers", 10, every=0.1)
        # The same token, for a stream outside its prefix: 403, nothing written.
        other = f"/v1/streams/jobs-user43-{secrets.token_hex(4)}/events"
        r = await c.post(other, json={"type": "x"}, headers=bearer(token))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert (await c.get(other, params={"token": token})).status_code == 403


async def test_durable_streams_with_an_es256_token(frontend: Proc) -> None:
    base = f"docs/{secrets.token_hex(4)}"
    token = signed(KEYS["ES256"], publish=[base + "*"], read=[base + "*"])
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        url = f"/v1/stream/{base}"
        auth_json = JSON | bearer(token)
        assert (await c.put(url, headers=auth_json, content=b"[]")).status_code == 201
        assert (await c.post(url, headers=auth_json, content=b'{"a": 1}')).status_code == 204
        r = await c.get(url, params={"offset": "-1", "token": token})
        assert r.status_code == 200 and r.json() == [{"a": 1}]
        assert (await c.head(url, headers=bearer(token))).status_code == 200
        # A fork: publish on the new path, read on its source; both under the prefix.
        fork = {"stream-forked-from": f"/v1/stream/{base}"}
        r = await c.put(f"{url}/fork-1", headers=auth_json | fork)
        assert r.status_code == 201, r.text
        r = await c.get(f"{url}/fork-1", params={"offset": "-1"}, headers=bearer(token))
        assert r.json() == [{"a": 1}]
        assert (await c.delete(f"{url}/fork-1", headers=bearer(token))).status_code == 204
        # Outside the prefix: 403 for every method.
        elsewhere = f"/v1/stream/other/{secrets.token_hex(4)}"
        for method in ("PUT", "POST", "DELETE", "GET", "HEAD"):
            r = await c.request(method, elsewhere, headers=auth_json)
            assert r.status_code == 403, (method, r.text)


async def test_generations_read_and_cancelled_with_eddsa_tokens(frontend: Proc) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        r = await c.post("/v1/generations", json={"prompt": "x"}, headers=bearer(ADMIN))
        assert r.status_code == 202, r.text
        gid, minted = r.json()["id"], r.json()["viewer_token"]
        # What the front-end mints is an HS256 JWT for this deployment's audience.
        payload = jwt.decode(minted, SECRET, algorithms=["HS256"], audience=AUDIENCE)
        assert payload["broadcaster"] == {"read": [gid]}
        assert (await c.get(f"/v1/generations/{gid}", headers=bearer(minted))).status_code == 200
        reader = signed(KEYS["EdDSA"], read=[gid])
        r = await c.get(f"/v1/generations/{gid}", params={"token": reader})
        assert r.status_code == 200 and r.json()["status"] == "queued"
        assert (
            await c.post(f"/v1/generations/{gid}/cancel", headers=bearer(reader))
        ).status_code == 403
        canceller = signed(KEYS["EdDSA"], cancel=[gid])
        r = await c.post(f"/v1/generations/{gid}/cancel", headers=bearer(canceller))
        assert r.status_code == 202, r.text
        # Starting a generation is never a token's right: an API key's.
        r = await c.post("/v1/generations", json={"prompt": "x"}, headers=bearer(canceller))
        assert r.status_code == 403


async def test_chat_routes_with_an_hs256_token_from_pyjwt(frontend: Proc) -> None:
    chat = "chat-" + secrets.token_hex(4)
    token = jwt.encode(
        {"exp": int(time.time()) + 60, "aud": AUDIENCE, "broadcaster": {"chat": [chat]}},
        SECRET,
        algorithm="HS256",
    )
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        # Access granted; the chat has no generation yet.
        assert (await c.get(f"/v1/chat/{chat}/stream", headers=bearer(token))).status_code == 204
        assert (await c.get(f"/v1/chat/{chat}/messages", headers=bearer(token))).status_code == 404
        assert (await c.post(f"/v1/chat/{chat}/stop", headers=bearer(token))).status_code == 404
        other = "chat-" + secrets.token_hex(4)
        assert (await c.get(f"/v1/chat/{other}/messages", headers=bearer(token))).status_code == 403
        # The chat token route mints a JWT of the chat, naming the holder asked for.
        r = await c.post(f"/v1/chat/{chat}/tokens", json={"sub": "user-9"}, headers=bearer(ADMIN))
        payload = jwt.decode(
            r.json()["chat_token"], SECRET, algorithms=["HS256"], audience=AUDIENCE
        )
        uses = {"chat_read": [chat], "chat_submit": [chat], "cancel": [chat]}
        assert payload["broadcaster"] == uses and payload["sub"] == "user-9"
        r = await c.post(
            f"/v1/streams/{chat}/tokens", json={"ttl_seconds": 30}, headers=bearer(ADMIN)
        )
        payload = jwt.decode(
            r.json()["viewer_token"], SECRET, algorithms=["HS256"], audience=AUDIENCE
        )
        assert payload["broadcaster"] == {"read": [chat]} and payload["exp"] - payload["iat"] == 30


# --- refused ---


async def test_bad_tokens_are_401_and_tokens_for_something_else_403(frontend: Proc) -> None:
    sid = "refused-" + secrets.token_hex(4)
    stranger = new_key("RS256", "rs256-1")  # the kid of a known key, another key
    unknown = new_key("ES256", "not-in-the-jwks")
    rsa = KEYS["RS256"]
    good = claims(read=[sid], aud=AUDIENCE)
    tampered_head, _, sig = signed(rsa, read=[sid]).split(".")
    wider = jwt.utils.base64url_encode(json.dumps(claims(read=["*"], aud=AUDIENCE)).encode())
    bad = {
        "expired": signed(rsa, ttl=-60, read=[sid]),
        "not yet valid": signed(rsa, read=[sid], nbf=int(time.time()) + 600),
        "another key, same kid": stranger.sign(good),
        "an unknown kid": unknown.sign(good),
        "alg none": unsigned(good),
        "wrong aud": rsa.sign(claims(read=[sid], aud="https://other.example")),
        "no aud": rsa.sign(claims(read=[sid])),
        "HS256 under the public key": hmac_with(rsa.public_pem, good, kid=rsa.kid),
        "HS256 under another secret": mint_token(
            secrets.token_hex(32), read=[sid], ttl_seconds=60, audience=AUDIENCE
        ),
        "tampered claims": f"{tampered_head}.{wider.decode()}.{sig}",
        "HS512": jwt.encode(good, SECRET, algorithm="HS512"),
    }
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        assert r.status_code == 201
        url = f"/v1/streams/{sid}/events"
        for why, token in bad.items():
            for r in (
                await c.get(url, params={"token": token}),
                await c.get(url, headers=bearer(token)),
            ):
                assert r.status_code == 401, (why, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                code = "token_expired" if why == "expired" else "unauthorized"
                assert r.json()["error"] == code
                assert token not in r.text
        # Valid, but for another stream or right: 403.
        for token in (
            signed(rsa, read=[sid + "x"]),
            signed(rsa, read=["refused-*x"]),
            signed(rsa, publish=[sid]),
        ):
            r = await c.get(url, params={"token": token})
            assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert (await c.get("/readyz")).json()["viewers"] == 0, "no refused stream started"
        assert (await read_sse(c, f"{url}?token={signed(rsa, read=[sid])}", stop_after=1)).ids == [
            1
        ]


def _b64json(value: object) -> str:
    return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()


MALFORMED = {
    # The token a review found answered 500 with a traceback: {"alg":["HS256"]}.
    "alg a list": ("eyJhbGciOlsiSFMyNTYiXX0.e30.AA", "alg must be a string"),
    "alg an object": (f"{_b64json({'alg': {'HS256': 1}})}.e30.AA", "alg must be a string"),
    "alg missing": (f"{_b64json({'typ': 'JWT'})}.e30.AA", "alg must be a string"),
    "kid a number": (f"{_b64json({'alg': 'RS256', 'kid': 7})}.e30.AA", "Key ID"),
    "kid huge": (f"{_b64json({'alg': 'RS256', 'kid': 'k' * 5000})}.e30.AA", "kid"),
    "header with junk after it": (
        jwt.utils.base64url_encode(b'{"alg":"HS256"}]').decode() + ".e30.AA",
        "malformed header",
    ),
    "header not JSON": ("eyJub3QganNvbg.e30.AA", "malformed header"),
    "header bad base64": ("eyJhbGciOiJIUzI1NiJ9x.e30.AA", "malformed header"),
    "huge": ("eyJ" + "A" * 20_000 + ".e30.AA", "longer than"),
}


async def test_malformed_headers_are_401_with_a_clear_message_never_500(frontend: Proc) -> None:
    """Whatever the header holds, before anything is authenticated: 401 `unauthorized`
    with WWW-Authenticate and a message saying what is wrong, on every kind of route
    that reads a token (SSE, Durable Streams, a producing route, a chat route), and
    the front-end logs no traceback."""
    sid = "malformed-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        assert r.status_code == 201
        for why, (token, says) in MALFORMED.items():
            for method, url, kw in (
                ("GET", f"/v1/streams/{sid}/events", {"params": {"token": token}}),
                ("GET", f"/v1/streams/{sid}/events", {"headers": bearer(token)}),
                ("GET", f"/v1/stream/{sid}", {"headers": bearer(token)}),
                ("GET", f"/v1/generations/{sid}", {"params": {"token": token}}),
                ("POST", f"/v1/streams/{sid}/events", {"headers": bearer(token), "json": {}}),
                ("GET", f"/v1/chat/{sid}/messages", {"headers": bearer(token)}),
            ):
                r = await c.request(method, url, **kw)
                assert r.status_code == 401, (why, method, url, r.status_code, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                body = r.json()
                assert set(body) == {"error", "message"} and body["error"] == "unauthorized"
                assert says in body["message"], (why, body)
                assert token not in r.text and "Traceback" not in r.text
    assert frontend.alive()
    assert "Traceback" not in frontend.log()


async def test_tokens_living_too_long_or_naming_an_empty_aud_are_401(frontend: Proc) -> None:
    """BROADCASTER_TOKEN_MAX_LIFETIME_SECONDS (86400 by default) bounds every token,
    whoever signed it: ``exp`` too far ahead, or ``exp - iat`` too long, is 401 with a
    message that says so. An empty ``aud`` (alone or beside ours) is 401 too. The token
    routes mint at most that long (422 beyond), and what they mint is accepted."""
    sid = "lifetime-" + secrets.token_hex(4)
    rsa, day, now = KEYS["RS256"], 86400, int(time.time())
    refused = {
        "exp two days ahead": (signed(rsa, ttl=2 * day, read=[sid]), "too far ahead"),
        "exp - iat three days": (signed(rsa, read=[sid], iat=now - 3 * day), "exp - iat"),
        "HS256, a year": (
            mint_token(SECRET, read=[sid], ttl_seconds=365 * day, audience=AUDIENCE),
            "too far ahead",
        ),
        "aud empty": (rsa.sign(claims(read=[sid], aud="")), "aud"),
        "aud an empty list": (rsa.sign(claims(read=[sid], aud=[])), "aud"),
        "aud ours and empty": (rsa.sign(claims(read=[sid], aud=[AUDIENCE, ""])), "aud"),
        "exp a string": (rsa.sign({**claims(read=[sid], aud=AUDIENCE), "exp": "9"}), "exp"),
    }
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        assert r.status_code == 201
        url = f"/v1/streams/{sid}/viewers"  # a reading route that answers at once
        for why, (token, says) in refused.items():
            r = await c.get(url, params={"token": token})
            assert r.status_code == 401, (why, r.text)
            assert r.json()["error"] == "unauthorized" and says in r.json()["message"], why
        assert (await c.get(url, params={"token": signed(rsa, ttl=day, read=[sid])})).is_success
        for route in (f"/v1/streams/{sid}/tokens", f"/v1/chat/{sid}/tokens"):
            r = await c.post(route, json={"ttl_seconds": day + 1}, headers=bearer(ADMIN))
            assert r.status_code == 422 and "1..86400" in r.json()["message"], r.text
        r = await c.post(
            f"/v1/streams/{sid}/tokens", json={"ttl_seconds": day}, headers=bearer(ADMIN)
        )
        assert r.status_code == 200
        minted = r.json()["viewer_token"]
        assert (await c.get(url, params={"token": minted})).status_code == 200


# --- rotation without a restart ---


async def test_a_key_rotated_into_the_jwks_url_works_without_a_restart(
    frontend: Proc, idp: JwksServer
) -> None:
    sid = "rotated-" + secrets.token_hex(4)
    rotated = new_key("RS256", "rs256-2")
    token = signed(rotated, read=[sid])
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        url = f"/v1/streams/{sid}/events"
        assert (await c.get(url, params={"token": token})).status_code == 401, "not published yet"
        fetches = idp.fetches
        idp.document = jwks_doc(*KEYS.values(), rotated)
        got = await read_sse(c, f"{url}?token={token}", stop_after=1)
        assert got.status == 200 and got.ids == [1]
        assert idp.fetches == fetches + 1, "the unknown kid fetched the JWKS once"
        assert frontend.alive()


async def test_a_rewritten_jwks_file_works_without_a_restart_and_legacy_tokens_are_off_by_default(
    idle_redis: EmbeddedRedis, frontend: Proc, tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    first, second = new_key("ES256", "2026-01"), new_key("EdDSA", "2026-02")
    path.write_text(json.dumps(jwks_doc(first)))
    proc = start_frontend(
        idle_redis.url,
        tmp_path,
        "frontend-jwks-file",
        env={
            "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
            "BROADCASTER_JWKS_FILE": str(path),
        },
    )
    try:
        sid = "file-" + secrets.token_hex(4)
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
            await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
            url = f"/v1/streams/{sid}/viewers"  # a reading route that answers at once
            old = first.sign(claims(read=[sid]))
            new = second.sign(claims(read=[sid]))
            assert (await c.get(url, params={"token": old})).status_code == 200
            assert (await c.get(url, params={"token": new})).status_code == 401
            # Rotate: a new file renamed over the old one (as a mounted Secret changes).
            staged = tmp_path / "jwks.json.new"
            staged.write_text(json.dumps(jwks_doc(second)))
            staged.replace(path)
            assert (await c.get(url, params={"token": new})).status_code == 200
            assert (await c.get(url, params={"token": old})).status_code == 401, "key retired"
            # No secret here: HS256 tokens, the front-end's own or legacy ones, are refused.
            legacy, _ = credentials.mint_legacy_token("v1", SECRET, sid, 60)
            assert (await c.get(url, params={"token": legacy})).status_code == 401
            hs = mint_token(SECRET, read=[sid], ttl_seconds=60)
            assert (await c.get(url, params={"token": hs})).status_code == 401
            r = await c.post(f"/v1/streams/{sid}/tokens", headers=bearer(ADMIN))
            assert r.status_code == 409 and r.json()["error"] == "tokens_disabled"
        assert proc.alive()
    finally:
        proc.stop()
    # The front-end of the module accepts legacy tokens (turned on; deprecated), and says
    # so at its start and at the first one.
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        sid = "legacy-" + secrets.token_hex(4)
        await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        for _ in range(2):
            legacy, _ = credentials.mint_legacy_token("v1", SECRET, sid, 60)
            r = await c.get(f"/v1/generations/{sid}", params={"token": legacy})
            assert r.status_code == 404, "past access: the feed is no generation"
    assert frontend.log().count("a legacy v1./c1. token was accepted") == 1
    assert "BROADCASTER_LEGACY_TOKENS=true: legacy v1./c1. tokens are accepted" in frontend.log()


async def test_unknown_kids_fetch_the_jwks_at_most_once_per_interval(
    idle_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    key = new_key("ES256", "only")
    with serve_jwks(jwks_doc(key)) as server:
        proc = start_frontend(
            idle_redis.url,
            tmp_path,
            "frontend-jwks-rate",
            env={
                "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
                "BROADCASTER_JWKS_URL": server.url,
                "BROADCASTER_JWKS_MIN_INTERVAL_SECONDS": "3600",
            },
        )
        try:
            sid = "rate-" + secrets.token_hex(4)
            async with httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
                await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
                url = f"/v1/streams/{sid}/viewers"  # a reading route that answers at once
                assert (
                    await c.get(url, params={"token": key.sign(claims(read=[sid]))})
                ).status_code == 200
                assert server.fetches == 1
                for i in range(30):
                    made_up = new_key("ES256", f"made-up-{i}").sign(claims(read=[sid]))
                    assert (await c.get(url, params={"token": made_up})).status_code == 401
                assert server.fetches == 1, "made-up kids cost no fetch within the interval"
                assert (
                    await c.get(url, params={"token": key.sign(claims(read=[sid]))})
                ).status_code == 200
        finally:
            proc.stop()
