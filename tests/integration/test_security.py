"""Access control, limits and the secure default, on real front-end processes.

Every rule of docs/security.md has a test here that fails if the rule is broken."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from broadcaster.auth import credentials
from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support.polling import wait_for
from tests.support.procs import Proc, read_sse, spawn, start_frontend

pytestmark = pytest.mark.anyio

ADMIN = "admin-" + secrets.token_hex(8)
PUBLISHER = "pub-" + secrets.token_hex(8)
MINTER = "mint-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)
KEYS = ",".join(
    [
        credentials.hash_key(ADMIN),
        credentials.hash_key(PUBLISHER) + ":publish",
        credentials.hash_key(MINTER) + ":tokens",
    ]
)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def secured(idle_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_frontend(
        idle_redis.url,
        tmp_path_factory.mktemp("sec"),
        "frontend-secured",
        env={
            "BROADCASTER_API_KEYS": KEYS,
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
            "BROADCASTER_MAX_EVENT_BYTES": "1024",
            "BROADCASTER_MAX_STREAM_EVENTS": "10",
            "BROADCASTER_MAX_STREAM_BYTES": "4096",
            "BROADCASTER_MAX_CONNECTIONS": "4",
            "BROADCASTER_MAX_VIEWERS_PER_STREAM": "2",
            "BROADCASTER_MAX_GENERATIONS_IN_FLIGHT": "3",
            "BROADCASTER_MAX_TOKENS_LIMIT": "100",
            "BROADCASTER_CORS_ORIGINS": "https://app.example",
        },
    )
    yield proc
    proc.stop()


# --- pure: the auth module ---


def test_api_key_entries_are_parsed_strictly() -> None:
    keys = credentials.parse_api_keys(KEYS)
    # A key that names no rights has every producer's, never a worker's (``work``).
    assert [k.rights for k in keys] == [credentials.PRODUCER_RIGHTS, {"publish"}, {"tokens"}]
    assert credentials.parse_api_keys("sha256:" + "0" * 64 + ":work")[0].rights == {"work"}
    assert credentials.parse_api_keys("sha256:" + "0" * 64 + ":admin")[0].rights == {"admin"}
    assert "admin" not in credentials.PRODUCER_RIGHTS, "revoking is never implied"
    assert credentials.find_key(keys, ADMIN) is keys[0]
    assert credentials.find_key(keys, "wrong") is None
    for bad in ("md5:abc", "sha256:zz", "sha256:" + "0" * 64 + ":fly"):
        with pytest.raises(ValueError):
            credentials.parse_api_keys(bad)
    assert credentials.parse_api_keys("") == []


def test_viewer_tokens_are_bound_to_stream_and_time() -> None:
    jwt_token, expires = credentials.mint_viewer_token(SECRET, "stream-a", 60, now=1000)
    assert expires == 1060
    assert credentials.verify_viewer_token(SECRET, jwt_token, "stream-a", now=1059)
    assert not credentials.verify_viewer_token(SECRET, jwt_token, "stream-a", now=1060 + 10), (
        "expired"
    )
    assert not credentials.verify_viewer_token(SECRET, jwt_token, "stream-b", now=1001), (
        "other stream"
    )
    assert not credentials.verify_viewer_token(
        secrets.token_hex(32), jwt_token, "stream-a", now=1001
    )
    # The legacy format, accepted during its deprecation, is bound the same way.
    token, expires = credentials.mint_legacy_token("v1", SECRET, "stream-a", 60, now=1000)
    assert expires == 1060
    assert credentials.verify_viewer_token(SECRET, token, "stream-a", now=1059)
    assert not credentials.verify_viewer_token(SECRET, token, "stream-a", now=1060), "expired"
    assert not credentials.verify_viewer_token(SECRET, token, "stream-b", now=1001), "other stream"
    assert not credentials.verify_viewer_token("other-secret", token, "stream-a", now=1001)
    version, exp, sig = token.split(".")
    for tampered in (
        f"{version}.{int(exp) + 100}.{sig}",  # a longer life
        f"{version}.{exp}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        f"v2.{exp}.{sig}",
        "garbage",
        "",
    ):
        assert not credentials.verify_viewer_token(SECRET, tampered, "stream-a", now=1001)


# --- API keys ---


async def test_producers_need_an_api_key_with_the_right(secured: Proc) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        body = {"prompt": "hi"}
        r = await c.post("/v1/generations", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = await c.post("/v1/generations", json=body, headers=bearer("not-a-key"))
        assert r.status_code == 401
        assert "not-a-key" not in r.text, "a presented key is never echoed"
        r = await c.post("/v1/generations", json=body, headers=bearer(PUBLISHER))
        assert r.status_code == 403
        r = await c.post("/v1/generations", json=body, headers=bearer(ADMIN))
        assert r.status_code == 202, r.text
        gid = r.json()["id"]
        assert credentials.verify_viewer_token(SECRET, r.json()["viewer_token"], gid)
        assert r.json()["token_expires_at"] > time.time()

        assert (await c.post(f"/v1/generations/{gid}/cancel")).status_code == 401
        r = await c.post(f"/v1/generations/{gid}/cancel", headers=bearer(PUBLISHER))
        assert r.status_code == 403
        r = await c.post(f"/v1/generations/{gid}/cancel", headers=bearer(ADMIN))
        assert r.status_code == 202

        sid = "sec-" + secrets.token_hex(4)
        event = {"type": "data-progress"}
        assert (await c.post(f"/v1/streams/{sid}/events", json=event)).status_code == 401
        r = await c.post(f"/v1/streams/{sid}/events", json=event, headers=bearer(MINTER))
        assert r.status_code == 403
        r = await c.post(f"/v1/streams/{sid}/events", json=event, headers=bearer(PUBLISHER))
        assert r.status_code == 201
        # a refused request wrote nothing: the stream holds only the accepted event
        r = await c.post(f"/v1/streams/{sid}/tokens", headers=bearer(MINTER))
        token = r.json()["viewer_token"]
        result = await read_sse(c, f"/v1/streams/{sid}/events?token={token}", stop_after=1)
        assert result.ids == [1]

        assert (await c.post(f"/v1/streams/{sid}/tokens")).status_code == 401
        r = await c.post(f"/v1/streams/{sid}/tokens", headers=bearer(PUBLISHER))
        assert r.status_code == 403


# --- viewer tokens ---


async def test_readers_need_a_token_for_that_very_stream(secured: Proc) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        a, b = "tok-a-" + secrets.token_hex(4), "tok-b-" + secrets.token_hex(4)
        for sid in (a, b):
            r = await c.post(
                f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(PUBLISHER)
            )
            assert r.status_code == 201
        r = await c.post(
            f"/v1/streams/{a}/tokens", json={"ttl_seconds": 60}, headers=bearer(MINTER)
        )
        token_a, expires = r.json()["viewer_token"], r.json()["token_expires_at"]
        assert 55 <= expires - time.time() <= 61
        url = f"/v1/streams/{a}/events"

        r = await c.get(url)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert (await c.get(url, headers=bearer("v1.1.x"))).status_code == 401
        # A valid token for another stream: 403 forbidden (not 401: the token is fine).
        r = await c.get(f"/v1/streams/{b}/events?token={token_a}")
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        head, body, sig = token_a.split(".")
        tampered = f"{head}.{body}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"
        assert (await c.get(f"{url}?token={tampered}")).status_code == 401
        expired, _ = credentials.mint_viewer_token(SECRET, a, 10, now=time.time() - 60)
        assert (await c.get(f"{url}?token={expired}")).status_code == 401
        forged, _ = credentials.mint_viewer_token(secrets.token_hex(32), a, 60)
        assert (await c.get(f"{url}?token={forged}")).status_code == 401
        # Legacy tokens are off unless BROADCASTER_LEGACY_TOKENS=true: no audience binds
        # them to this deployment.
        legacy, _ = credentials.mint_legacy_token("v1", SECRET, a, 60)
        r = await c.get(f"{url}?token={legacy}")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert (await c.get("/readyz")).json()["viewers"] == 0, "no refused stream started"

        ok = await read_sse(c, url, stop_after=1, headers=bearer(token_a))
        assert ok.status == 200 and ok.ids == [1]
        ok = await read_sse(c, f"{url}?token={token_a}", stop_after=1)
        assert ok.status == 200 and ok.ids == [1]

        for ttl in (0, -1, 10**9, "60", True):
            r = await c.post(
                f"/v1/streams/{a}/tokens", json={"ttl_seconds": ttl}, headers=bearer(MINTER)
            )
            assert r.status_code == 422, ttl


async def test_generation_status_needs_a_token(secured: Proc) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        r = await c.post("/v1/generations", json={"prompt": "x"}, headers=bearer(ADMIN))
        gid, token = r.json()["id"], r.json()["viewer_token"]
        assert (await c.get(f"/v1/generations/{gid}")).status_code == 401
        r = await c.get(f"/v1/generations/{gid}", headers=bearer(token))
        assert r.status_code == 200 and r.json()["status"] == "queued"
        other = (
            await c.post("/v1/generations", json={"prompt": "y"}, headers=bearer(ADMIN))
        ).json()
        assert (await c.get(f"/v1/generations/{other['id']}?token={token}")).status_code == 403
        for g in (gid, other["id"]):  # do not hold in-flight slots for the other tests
            await c.post(f"/v1/generations/{g}/cancel", headers=bearer(ADMIN))


# --- limits ---


async def test_event_and_stream_size_limits(secured: Proc) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        sid = "size-" + secrets.token_hex(4)
        url = f"/v1/streams/{sid}/events"
        r = await c.post(url, json={"type": "x", "blob": "y" * 2000}, headers=bearer(PUBLISHER))
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        for _ in range(10):
            r = await c.post(url, json={"type": "x"}, headers=bearer(PUBLISHER))
            assert r.status_code == 201
        r = await c.post(url, json={"type": "x"}, headers=bearer(PUBLISHER))
        assert r.status_code == 413 and r.json()["error"] == "stream_full"
        r = await c.post(url, json={"type": "finish"}, headers=bearer(PUBLISHER))
        assert r.status_code == 201, "a full stream can still be ended"
        assert r.json()["last_event_id"] == 11

        sid = "bytes-" + secrets.token_hex(4)
        url = f"/v1/streams/{sid}/events"
        blob = {"type": "x", "blob": "z" * 900}
        codes = [
            (await c.post(url, json=blob, headers=bearer(PUBLISHER))).status_code for _ in range(6)
        ]
        assert codes[:4] == [201] * 4 and codes[4:] == [413, 413], "4096 bytes per stream"


async def test_connection_and_viewer_limits(secured: Proc) -> None:
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, limits=limits) as c:
        sids = ["conn-" + secrets.token_hex(4) for _ in range(3)]
        tokens = {}
        for sid in sids:
            await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(PUBLISHER))
            r = await c.post(f"/v1/streams/{sid}/tokens", headers=bearer(MINTER))
            tokens[sid] = r.json()["viewer_token"]

        async def open_stream(sid: str) -> httpx.Response:
            req = c.build_request("GET", f"/v1/streams/{sid}/events?token={tokens[sid]}")
            return await c.send(req, stream=True)

        held = [await open_stream(sids[0]), await open_stream(sids[0])]
        assert all(r.status_code == 200 for r in held)
        third = await open_stream(sids[0])
        assert third.status_code == 503 and third.headers["retry-after"]
        await third.aclose()
        held += [await open_stream(sids[1]), await open_stream(sids[1])]
        assert all(r.status_code == 200 for r in held), "other streams still have room"
        fifth = await open_stream(sids[2])
        assert fifth.status_code == 503, "4 connections per front-end"
        assert fifth.headers["retry-after"]
        await fifth.aclose()
        await held.pop().aclose()
        deadline = time.monotonic() + 5
        while (await c.get("/readyz")).json()["viewers"] > 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        again = await open_stream(sids[2])
        assert again.status_code == 200, "room again once a viewer left"
        for r in [*held, again]:
            await r.aclose()


async def test_generation_limits(secured: Proc) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        r = await c.post(
            "/v1/generations", json={"prompt": "x", "max_tokens": 101}, headers=bearer(ADMIN)
        )
        assert r.status_code == 422 and "100" in r.json()["message"]
        codes = []
        for _ in range(5):  # no worker runs: every generation stays queued
            r = await c.post("/v1/generations", json={"prompt": "x"}, headers=bearer(ADMIN))
            codes.append(r.status_code)
            if r.status_code == 503:
                assert r.headers["retry-after"]
        assert 503 in codes and codes.index(503) <= 3, codes


async def test_rate_limit_per_key_is_shared_by_frontends(
    idle_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    env = {
        "BROADCASTER_API_KEYS": KEYS,
        "BROADCASTER_TOKEN_SECRET": SECRET,
        "BROADCASTER_RATE_LIMIT_PER_MINUTE": "6",
    }
    a = start_frontend(idle_redis.url, tmp_path, "rate-a", env=env)
    b = start_frontend(idle_redis.url, tmp_path, "rate-b", env=env)
    try:
        if time.time() % 60 > 45:  # keep the burst inside one minute window
            await asyncio.sleep(61 - time.time() % 60)
        async with httpx.AsyncClient(timeout=10) as c:
            sid = "rate-" + secrets.token_hex(4)
            codes = []
            for i in range(8):
                fe = (a, b)[i % 2]
                r = await c.post(
                    fe.url + f"/v1/streams/{sid}/events",
                    json={"type": "x"},
                    headers=bearer(PUBLISHER),
                )
                codes.append(r.status_code)
                if r.status_code == 429:
                    assert 1 <= int(r.headers["retry-after"]) <= 60
            assert codes == [201] * 6 + [429, 429]
            r = await c.post(
                a.url + f"/v1/streams/{sid}/tokens", headers=bearer(MINTER)
            )  # another key has its own budget
            assert r.status_code == 200
    finally:
        a.stop()
        b.stop()


# --- CORS ---


async def test_cors_only_for_allowed_origins(secured: Proc, redis_url: str, tmp_path: Path) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        r = await c.options(
            "/v1/generations", headers={"origin": "https://app.example", **preflight}
        )
        assert r.headers.get("access-control-allow-origin") == "https://app.example"
        r = await c.options(
            "/v1/generations", headers={"origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in r.headers
    plain = start_frontend(redis_url, tmp_path, "no-cors")
    try:
        async with httpx.AsyncClient(base_url=plain.url, timeout=10) as c:
            r = await c.get("/healthz", headers={"origin": "https://app.example"})
            assert "access-control-allow-origin" not in r.headers, "no CORS by default"
    finally:
        plain.stop()


async def test_an_empty_aud_is_401_without_an_audience_configured(secured: Proc) -> None:
    """Without BROADCASTER_TOKEN_AUDIENCE a token carrying any ``aud`` is refused, and an
    empty one (which PyJWT takes for none) too."""
    sid = "aud-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        r = await c.post(f"/v1/streams/{sid}/events", json={"type": "x"}, headers=bearer(ADMIN))
        assert r.status_code == 201
        url = f"/v1/streams/{sid}/viewers"
        exp = int(time.time()) + 60
        for aud in ("", [], [""], None, "https://other.example"):
            payload = {"exp": exp, "aud": aud, "broadcaster": {"read": [sid]}}
            token = jwt.encode(payload, SECRET, algorithm="HS256")
            r = await c.get(url, params={"token": token})
            assert r.status_code == 401 and "aud" in r.json()["message"], (aud, r.text)
        fine = jwt.encode({"exp": exp, "broadcaster": {"read": [sid]}}, SECRET, algorithm="HS256")
        assert (await c.get(url, params={"token": fine})).status_code == 200


async def test_metrics_need_the_metrics_key_when_one_is_set(
    secured: Proc, idle_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Without BROADCASTER_METRICS_KEY, /metrics is open (scrapers on the deployment's
    network; deploy/nginx.conf does not pass it on). With it, only
    ``Authorization: Bearer <key>`` opens it: no key, another key, an API key, a token
    or the key as ``?token=`` is 401 in the API's error shape, and nothing leaks."""
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as c:
        r = await c.get("/metrics")
        assert r.status_code == 200 and "broadcaster_sse_connections" in r.text
    key = "metrics-" + secrets.token_hex(16)
    proc = start_frontend(
        idle_redis.url,
        tmp_path,
        "frontend-metrics-key",
        env={
            "BROADCASTER_API_KEYS": KEYS,
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_METRICS_KEY": key,
        },
    )
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as c:
            viewer, _ = credentials.mint_viewer_token(SECRET, "s", 60)
            for refused in (
                {},
                {"headers": bearer(key + "x")},
                {"headers": bearer(key[:-1])},
                {"headers": bearer(ADMIN)},
                {"headers": bearer(viewer)},
                {"headers": {"authorization": key}},
                {"params": {"token": key}},
            ):
                r = await c.get("/metrics", **refused)
                assert r.status_code == 401, (refused, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json() == {
                    "error": "unauthorized",
                    "message": "/metrics needs the metrics key: Authorization: Bearer <key>",
                }
                assert "broadcaster_" not in r.text and key not in r.text
            r = await c.get("/metrics", headers=bearer(key))
            assert r.status_code == 200 and "broadcaster_sse_connections" in r.text
            assert r.headers["content-type"].startswith("text/plain")
            # Only /metrics: the probes stay open to the orchestrator.
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
        assert key not in proc.log()
    finally:
        proc.stop()


# --- the secure default ---


def serve(args: list[str], env: dict[str, str], cwd: Path) -> Proc:
    """``broadcaster serve`` with exactly ``env`` (forked: tests/support/forkserver.py)."""
    name = f"serve-{next(_serves)}"
    return spawn(name, ["-m", "broadcaster", "serve", *args], env, cwd, fork=True, inherit=False)


_serves = itertools.count(1)


def ended(proc: Proc, timeout: float = 20) -> str:
    """What ``proc`` said, once it exited by itself."""
    proc.popen.wait(timeout)
    return proc.log()


def wait_for_line(proc: Proc, needle: str, timeout: float = 20) -> str:
    """What ``proc`` said, once it said ``needle`` (or exited)."""
    said = f"{needle!r} in {proc.name}'s log"
    wait_for(said, lambda: needle in proc.log() or not proc.alive(), timeout, context=proc.log)
    return proc.log()


def test_secure_default(redis_url: str, tmp_path: Path) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    base["REDIS_URL"] = redis_url

    refused = serve(["--host", "0.0.0.0", "--port", str(free_port())], base, tmp_path)
    out = ended(refused)
    assert refused.popen.returncode != 0
    assert "refusing to serve on 0.0.0.0" in out and "--insecure" in out

    half = {**base, "BROADCASTER_API_KEYS": KEYS}  # keys but no token secret
    refused = serve(["--host", "0.0.0.0", "--port", str(free_port())], half, tmp_path)
    ended(refused)
    assert refused.popen.returncode != 0

    for args, env, needle in [
        (["--host", "127.0.0.1"], base, "serving on loopback (127.0.0.1) only"),
        (["--host", "0.0.0.0", "--insecure"], base, "INSECURE: serving on 0.0.0.0"),
        (
            ["--host", "0.0.0.0"],
            {**base, "BROADCASTER_API_KEYS": KEYS, "BROADCASTER_TOKEN_SECRET": SECRET},
            "access control on: 3 API key(s)",
        ),
    ]:
        proc = serve([*args, "--port", str(free_port())], env, tmp_path)
        try:
            seen = wait_for_line(proc, needle)
            assert needle in seen, seen
        finally:
            proc.stop()

    bad_keys = serve(
        ["--port", str(free_port())], {**base, "BROADCASTER_API_KEYS": "md5:x"}, tmp_path
    )
    out = ended(bad_keys)
    assert bad_keys.popen.returncode != 0 and "BROADCASTER_API_KEYS entry 1" in out

    guarded = {**base, "BROADCASTER_API_KEYS": KEYS, "BROADCASTER_TOKEN_SECRET": SECRET}
    for bad, needle in (
        ({"BROADCASTER_TOKEN_AUDIENCE": ""}, "BROADCASTER_TOKEN_AUDIENCE is empty"),
        ({"BROADCASTER_TOKEN_AUDIENCE": "  "}, "BROADCASTER_TOKEN_AUDIENCE is empty"),
        ({"BROADCASTER_METRICS_KEY": ""}, "BROADCASTER_METRICS_KEY is empty"),
        (
            {"BROADCASTER_TOKEN_TTL_SECONDS": "90000"},
            "BROADCASTER_TOKEN_TTL_SECONDS (90000) is above",
        ),
    ):
        stopped = serve(["--port", str(free_port())], {**guarded, **bad}, tmp_path)
        out = ended(stopped)
        assert stopped.popen.returncode != 0 and needle in out, out


# --- errors ---


async def test_errors_leak_nothing(tmp_path: Path) -> None:
    """With Redis gone, answers are a generic 503: no stack trace, no Redis address,
    password or library details."""
    password = "pw-" + secrets.token_hex(8)
    server = EmbeddedRedis(tmp_path / "r", persistent=False, extra_args=["--requirepass", password])
    server.start(reuse=False)
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    fe = start_frontend(url, tmp_path, "leaky", env={"BROADCASTER_TOKEN_SECRET": SECRET})
    try:
        server.stop()
        async with httpx.AsyncClient(base_url=fe.url, timeout=20) as c:
            token, _ = credentials.mint_viewer_token(SECRET, "gone", 60)
            responses = [
                await c.post("/v1/streams/gone/events", json={"type": "x"}),
                await c.get(f"/v1/streams/gone/events?token={token}"),
                await c.get(f"/v1/generations/gone?token={token}"),
                await c.post("/v1/generations", json={"prompt": "x"}),
                await c.get("/readyz"),
                await c.get("/v1/streams/gone/events?token=" + "A" * 300),
            ]
        for r in responses:
            assert r.status_code in (401, 503), r.text
            body = r.text
            for detail in (password, SECRET, "redis://", "127.0.0.1", "Traceback", "Error:"):
                assert detail not in body, (detail, body)
        assert password not in fe.log()
    finally:
        fe.stop()
