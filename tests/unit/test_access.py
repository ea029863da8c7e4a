"""The access dependencies alone (broadcaster.http.access), each on a small FastAPI app
built for the test: API keys and their rights, the per-key rate limit, tokens (JWTs on
reading, producing and chat routes; 401 against 403; the subject; the multi-stream
check; legacy tokens). The rate limit counts in fakeredis here; against a real Redis and
real front-ends it is tests/integration/test_security.py (and test_jwt.py for tokens)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.requests import Request as StarletteRequest

from broadcaster import mint_token
from broadcaster.auth import credentials
from broadcaster.core import keys
from broadcaster.http.access import (
    AccessPolicy,
    ApiKeyRight,
    authorize_read,
    check_chat,
    check_viewer,
    producer,
    viewer_subject,
    viewer_token,
)
from broadcaster.http.errors import ApiError, install_error_handlers
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import valid_stream_id

pytestmark = pytest.mark.anyio

SECRET = secrets.token_hex(16)
PUBLISHER = "publisher-" + secrets.token_hex(8)  # may publish only
ADMIN = "admin-" + secrets.token_hex(8)  # every right


def settings(**overrides: Any) -> Settings:
    keys_spec = f"{credentials.hash_key(PUBLISHER)}:publish,{credentials.hash_key(ADMIN)}"
    values: dict[str, Any] = {"api_keys": keys_spec, "token_secret": SECRET, **overrides}
    return Settings(**values)


def build_app(config: Settings) -> FastAPI:
    """Routes guarded by each dependency, and an app.state as create_app's."""
    import fakeredis

    app = FastAPI()
    app.state.settings = config
    app.state.access = AccessPolicy.from_settings(config)
    app.state.redis = fakeredis.FakeAsyncRedis()
    install_error_handlers(app)

    @app.post("/cancel", dependencies=[Depends(ApiKeyRight("cancel"))])
    async def cancel() -> dict[str, str]:
        return {"ok": "cancel"}

    @app.post("/publish/{stream_id}", dependencies=[Depends(valid_stream_id), *producer("publish")])
    async def publish(stream_id: str) -> dict[str, str]:
        return {"ok": stream_id}

    @app.get("/read/{stream_id}", dependencies=[Depends(viewer_token)])
    async def read(stream_id: str, request: Request) -> dict[str, str | None]:
        return {"ok": stream_id, "subject": viewer_subject(request)}

    @app.post("/cancel/{stream_id}", dependencies=[Depends(valid_stream_id), *producer("cancel")])
    async def cancel_one(stream_id: str) -> dict[str, str]:
        return {"ok": stream_id}

    @app.post("/generate", dependencies=producer("generate"))
    async def generate() -> dict[str, str]:
        return {"ok": "generate"}

    @app.put("/ds/{path:path}", dependencies=producer("publish"))
    async def ds_create(path: str) -> dict[str, str]:
        return {"ok": path}

    @app.get("/multi")
    async def multi(request: Request) -> dict[str, str | None]:
        q = request.query_params
        await authorize_read(request, q.getlist("stream"), q.getlist("prefix"))
        return {"subject": viewer_subject(request)}

    @app.post("/chat/{chat_id}/{what}")
    async def chat(chat_id: str, what: str, request: Request) -> dict[str, str]:
        await check_chat(request, chat_id, {"submit": "submit", "stop": "stop"}.get(what, "read"))
        return {"ok": chat_id}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(build_app(settings(rate_limit_per_minute=0))) as c:
        yield c


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


async def test_a_missing_or_unknown_key_is_401_with_www_authenticate(
    client: httpx.AsyncClient,
) -> None:
    for headers in ({}, bearer("not-a-key"), {"authorization": f"Basic {ADMIN}"}, bearer("")):
        r = await client.post("/cancel", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized"
        assert ADMIN not in r.text


async def test_a_key_without_the_right_is_403_and_with_it_passes(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/cancel", headers=bearer(PUBLISHER))
    assert r.status_code == 403 and r.json() == {
        "error": "forbidden",
        "message": "this API key may not cancel",
    }
    assert "www-authenticate" not in r.headers
    assert (await client.post("/cancel", headers=bearer(ADMIN))).json() == {"ok": "cancel"}
    r = await client.post("/publish/s1", headers=bearer(PUBLISHER))
    assert r.status_code == 200 and r.json() == {"ok": "s1"}


async def test_a_bad_stream_id_is_404_before_the_key_is_asked_for(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/publish/" + "x" * 65)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert (await client.post("/publish/ok")).status_code == 401


async def test_no_keys_configured_means_anyone_may_produce() -> None:
    async with _client(build_app(settings(api_keys=None))) as c:
        assert (await c.post("/cancel")).status_code == 200
        assert (await c.post("/publish/s1", headers=bearer("anything"))).status_code == 200


def test_an_unknown_right_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no such right"):
        ApiKeyRight("delete")


async def test_a_viewer_token_for_this_stream_passes_as_bearer_or_query(
    client: httpx.AsyncClient,
) -> None:
    token, _ = credentials.mint_viewer_token(SECRET, "s1", 60)
    ok = {"ok": "s1", "subject": None}
    assert (await client.get("/read/s1", headers=bearer(token))).json() == ok
    assert (await client.get("/read/s1", params={"token": token})).json() == ok


async def test_a_missing_invalid_or_expired_token_is_401_and_another_streams_is_403(
    client: httpx.AsyncClient,
) -> None:
    other, _ = credentials.mint_viewer_token(SECRET, "s2", 60)
    expired, _ = credentials.mint_viewer_token(SECRET, "s1", 60, now=1_000_000)
    forged, _ = credentials.mint_viewer_token(secrets.token_hex(32), "s1", 60)
    for headers in ({}, bearer(expired), bearer(forged), bearer(ADMIN)):
        r = await client.get("/read/s1", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        # An expired token says so: the client gets a new one and resumes.
        code = "token_expired" if headers == bearer(expired) else "unauthorized"
        assert r.json()["error"] == code
    # A valid token that does not cover this stream: forbidden, not unauthorized.
    for r in (
        await client.get("/read/s1", headers=bearer(other)),
        await client.get("/read/s1", params={"token": other}),
    ):
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert "www-authenticate" not in r.headers


async def test_no_token_secret_means_anyone_may_read() -> None:
    async with _client(build_app(settings(token_secret=None))) as c:
        assert (await c.get("/read/s1")).json() == {"ok": "s1", "subject": None}


async def test_the_viewer_checker_alone_on_a_bare_request() -> None:
    """The SSE route calls ``check_viewer`` itself (its fast path runs no dependencies)."""
    app = build_app(settings())
    token, _ = credentials.mint_viewer_token(SECRET, "s1", 60, sub="user-1")

    def request(query: bytes, headers: list[tuple[bytes, bytes]]) -> Request:
        scope = {"type": "http", "app": app, "query_string": query, "headers": headers}
        return StarletteRequest(scope)

    await check_viewer(request(b"token=" + token.encode(), []), "s1")
    bare = request(b"", [(b"authorization", b"Bearer " + token.encode())])
    await check_viewer(bare, "s1")
    assert viewer_subject(bare) == "user-1", "the token's sub, where viewer counts find it"
    with pytest.raises(ApiError) as refused:
        await check_viewer(request(b"token=" + token.encode(), []), "s2")
    assert refused.value.status == 403
    with pytest.raises(ApiError) as refused:
        await check_viewer(request(b"token=x" + token.encode(), []), "s1")
    assert refused.value.status == 401
    assert refused.value.extra["headers"] == {"www-authenticate": "Bearer"}


async def test_prefix_entries_and_the_subject_on_reading_routes(client: httpx.AsyncClient) -> None:
    token = mint_token(SECRET, read=["jobs-user42-*", "docs/abc*"], sub="user-42", ttl_seconds=60)
    r = await client.get("/read/jobs-user42-7", params={"token": token})
    assert r.json() == {"ok": "jobs-user42-7", "subject": "user-42"}
    assert (await client.get("/read/jobs-user43-7", params={"token": token})).status_code == 403


async def test_authorize_read_refuses_the_whole_request_unless_all_are_covered(
    client: httpx.AsyncClient,
) -> None:
    """The multi-stream route's check: every stream and every prefix, or 403 for all."""
    token = mint_token(SECRET, read=["a", "jobs-user42-*"], sub="u42", ttl_seconds=60)

    async def get(**params: object) -> httpx.Response:
        return await client.get("/multi", params={"token": token, **params})

    assert (await get(stream=["a", "jobs-user42-1"])).json() == {"subject": "u42"}
    assert (await get(prefix=["jobs-user42-"])).status_code == 200
    assert (await get(prefix=["jobs-user42-x"], stream="a")).status_code == 200
    for refused in (
        {"stream": ["a", "b"]},
        {"prefix": ["jobs-user4"]},  # wider than the grant
        {"prefix": ["a"]},  # an exact entry covers no prefix
        {"stream": "a", "prefix": ["jobs-"]},
    ):
        r = await get(**refused)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", refused
    assert (await client.get("/multi", params={"stream": "a"})).status_code == 401
    legacy, _ = credentials.mint_legacy_token("v1", SECRET, "a", 60)
    async with _client(build_app(settings(rate_limit_per_minute=0, legacy_tokens=True))) as c:
        assert (await c.get("/multi", params={"token": legacy, "stream": "a"})).status_code == 200
        r = await c.get("/multi", params={"token": legacy, "stream": ["a", "b"]})
        assert r.status_code == 403
        r = await c.get("/multi", params={"token": legacy, "prefix": "a"})
        assert r.status_code == 401


async def test_a_jwt_stands_in_for_an_api_key_on_the_streams_it_grants(
    client: httpx.AsyncClient,
) -> None:
    token = mint_token(
        SECRET, publish=["feed-*", "docs/abc*"], cancel=["g1"], read=["s1"], ttl_seconds=60
    )
    assert (await client.post("/publish/feed-1", headers=bearer(token))).json() == {"ok": "feed-1"}
    r = await client.put("/ds/docs/abc/fork", headers=bearer(token))
    assert r.json() == {"ok": "docs/abc/fork"}
    assert (await client.post("/cancel/g1", headers=bearer(token))).json() == {"ok": "g1"}
    for method, url in (
        ("POST", "/publish/other"),  # not granted
        ("POST", "/publish/s1"),  # read is not publish
        ("POST", "/cancel/feed-1"),  # publish is not cancel
        ("PUT", "/ds/docs/abd"),
        ("POST", "/generate"),  # never a token's right: an API key's
        ("POST", "/cancel"),
    ):
        r = await client.request(method, url, headers=bearer(token))
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (url, r.text)
    expired = mint_token(SECRET, publish=["feed-*"], ttl_seconds=60, now=1_000_000)
    r = await client.post("/publish/feed-1", headers=bearer(expired))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    # Only as Bearer on a producing route: ?token= is for EventSource.
    assert (await client.post("/publish/feed-1", params={"token": token})).status_code == 401


async def test_tokens_publishing_are_rate_limited_by_subject() -> None:
    app = build_app(settings(rate_limit_per_minute=2))
    this_minute()
    first = mint_token(SECRET, publish=["f"], sub="u1", ttl_seconds=60)
    second = mint_token(SECRET, publish=["f"], sub="u1", ttl_seconds=60)
    other = mint_token(SECRET, publish=["f"], sub="u2", ttl_seconds=60)
    async with _client(app) as c:
        codes = [
            (await c.post("/publish/f", headers=bearer(t))).status_code
            for t in (first, second, first)
        ]
        assert codes == [200, 200, 429], "one subject, one count, whichever token"
        assert (await c.post("/publish/f", headers=bearer(other))).status_code == 200


async def test_chat_routes_with_jwts(client: httpx.AsyncClient) -> None:
    chat = mint_token(SECRET, chat=["c1"], ttl_seconds=60)
    stopper = mint_token(SECRET, cancel=["c1"], ttl_seconds=60)
    for what in ("submit", "read", "stop"):
        assert (await client.post(f"/chat/c1/{what}", headers=bearer(chat))).status_code == 200
        r = await client.post(f"/chat/c2/{what}", headers=bearer(chat))
        assert r.status_code == 403, what
    assert (await client.post("/chat/c1/stop", headers=bearer(stopper))).status_code == 200
    assert (await client.post("/chat/c1/submit", headers=bearer(stopper))).status_code == 403
    viewer, _ = credentials.mint_viewer_token(SECRET, "c1", 60)
    assert (await client.post("/chat/c1/read", headers=bearer(viewer))).status_code == 403
    assert (await client.post("/chat/c1/read")).status_code == 401
    assert (await client.post("/chat/c1/submit", headers=bearer(ADMIN))).status_code == 200


async def test_legacy_tokens_only_when_turned_on() -> None:
    """Off by default: a legacy token carries no audience, so it would open a stream of
    any deployment that shares the secret. With BROADCASTER_LEGACY_TOKENS=true they work
    as they did."""
    viewer, _ = credentials.mint_legacy_token("v1", SECRET, "s1", 60)
    chat, _ = credentials.mint_legacy_token("c1", SECRET, "c1", 60)
    assert Settings().legacy_tokens is False
    on = settings(rate_limit_per_minute=0, legacy_tokens=True)
    async with _client(build_app(on)) as c:
        assert (await c.get("/read/s1", params={"token": viewer})).status_code == 200
        assert (await c.get("/read/s2", params={"token": viewer})).status_code == 401
        assert (await c.post("/chat/c1/read", headers=bearer(chat))).status_code == 200
        assert (await c.post("/chat/c1/read", headers=bearer(viewer))).status_code == 401
    async with _client(build_app(settings(rate_limit_per_minute=0))) as c:
        r = await c.get("/read/s1", params={"token": viewer})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert (await c.post("/chat/c1/read", headers=bearer(chat))).status_code == 401


def key_name(key: str) -> str:
    """The non-secret name a key's counter goes by (``credentials.ApiKey.name``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def this_minute() -> int:
    """The current minute, waiting first if it is about to end: counts start again at
    each minute, and the tests below must not straddle two."""
    if 60 - time.time() % 60 < 2:
        time.sleep(2.1)
    return int(time.time() // 60)


async def test_the_rate_limit_is_429_with_retry_after_past_the_rate_per_key() -> None:
    app = build_app(settings(rate_limit_per_minute=3))
    minute = this_minute()
    async with _client(app) as c:
        for _ in range(3):
            assert (await c.post("/publish/s1", headers=bearer(PUBLISHER))).status_code == 200
        r = await c.post("/publish/s1", headers=bearer(PUBLISHER))
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert r.json()["message"] == "over 3 requests per minute for this key"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # Each key has its own count, in Redis where every front-end shares it.
        assert (await c.post("/publish/s1", headers=bearer(ADMIN))).status_code == 200
    redis = app.state.redis
    publisher = keys.ratelimit_key(key_name(PUBLISHER), minute)
    admin = keys.ratelimit_key(key_name(ADMIN), minute)
    assert sorted(k.decode() for k in await redis.keys("*")) == sorted([publisher, admin])
    assert int(await redis.get(publisher)) == 4 and int(await redis.get(admin)) == 1
    assert 0 < await redis.ttl(publisher) <= keys.RATELIMIT_TTL


async def test_a_request_refused_before_the_rate_limit_is_not_counted() -> None:
    app = build_app(settings(rate_limit_per_minute=1))
    this_minute()
    async with _client(app) as c:
        assert (await c.post("/publish/s1", headers=bearer("not-a-key"))).status_code == 401
        assert (await c.post("/publish/s1")).status_code == 401
        assert (await c.post("/publish/s1", headers=bearer(PUBLISHER))).status_code == 200
        assert (await c.post("/publish/s1", headers=bearer(PUBLISHER))).status_code == 429


async def test_a_rate_of_zero_turns_the_limit_off(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await client.post("/publish/s1", headers=bearer(PUBLISHER))).status_code == 200


def test_chat_tokens_and_viewer_tokens_never_stand_in_for_each_other() -> None:
    secret = secrets.token_hex(32)
    chat, _ = credentials.mint_chat_token(secret, "c1", 60)
    viewer, _ = credentials.mint_viewer_token(secret, "c1", 60)
    assert credentials.verify_chat_token(secret, chat, "c1")
    assert not credentials.verify_chat_token(secret, chat, "c2")
    assert not credentials.verify_viewer_token(secret, chat, "c1")
    assert not credentials.verify_chat_token(secret, viewer, "c1")
    assert not credentials.verify_chat_token(secrets.token_hex(32), chat, "c1")
    expired, _ = credentials.mint_chat_token(secret, "c1", 60, now=time.time() - 120)
    assert not credentials.verify_chat_token(secret, expired, "c1")
    # A legacy token whose prefix is swapped does not verify either way.
    legacy, _ = credentials.mint_legacy_token("c1", secret, "c1", 60)
    assert credentials.verify_chat_token(secret, legacy, "c1")
    assert not credentials.verify_viewer_token(secret, "v1" + legacy[2:], "c1")


def test_token_settings_are_checked_at_start() -> None:
    rotating = AccessPolicy.from_settings(settings(token_secret=None, token_secrets="new1,old1"))
    assert rotating.token_secret == "new1" and rotating.reads_guarded
    assert rotating.verifier is not None and rotating.verifier.secrets == ["new1", "old1"]
    with pytest.raises(ValueError, match="not both"):
        AccessPolicy.from_settings(settings(token_secrets="a,b"))
    with pytest.raises(ValueError, match="empty"):
        AccessPolicy.from_settings(settings(token_secret=None, token_secrets="a,,b"))
    with pytest.raises(ValueError, match="https"):
        AccessPolicy.from_settings(settings(jwks_url="http://idp.example/jwks.json"))
    with pytest.raises(ValueError, match="not both"):
        AccessPolicy.from_settings(settings(jwks_url="https://idp.example/j", jwks_file="/j"))
    for url in ("https://idp.example/jwks.json", "http://127.0.0.1:9/jwks.json"):
        only_jwks = AccessPolicy.from_settings(settings(token_secret=None, jwks_url=url))
        assert only_jwks.reads_guarded and only_jwks.token_secret is None, "verifies, mints none"
    assert not AccessPolicy.from_settings(settings(token_secret=None)).reads_guarded
    for empty in ("", " "):
        with pytest.raises(ValueError, match="BROADCASTER_TOKEN_AUDIENCE is empty"):
            AccessPolicy.from_settings(settings(token_audience=empty))
    with pytest.raises(ValueError, match=r"TOKEN_TTL_SECONDS .* is above"):
        AccessPolicy.from_settings(
            settings(token_ttl_seconds=7200, token_max_lifetime_seconds=3600)
        )


def test_the_token_routes_mint_no_longer_than_the_max_lifetime() -> None:
    """A token the front-end mints must stay acceptable: the routes' cap is the max TTL,
    but never beyond the max lifetime."""
    assert settings().mint_ttl_cap() == 86400, "a week's max TTL, a day's lifetime"
    assert settings(token_max_ttl_seconds=600).mint_ttl_cap() == 600
    assert settings(token_max_lifetime_seconds=7 * 86400).mint_ttl_cap() == 7 * 86400
    policy = AccessPolicy.from_settings(settings(token_max_lifetime_seconds=3700))
    assert policy.verifier is not None and policy.verifier.max_lifetime == 3700
