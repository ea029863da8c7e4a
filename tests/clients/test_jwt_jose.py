"""Tokens minted by a Node backend with ``jose`` (tests/clients/jwt/mint.mjs, the way
docs/security.md shows) accepted by a real front-end: HS256 under the shared secret, and
RS256, ES256 and EdDSA under private keys whose public halves are in the front-end's JWKS
file. An expired one, one for another prefix, one of an unknown key and one for another
audience are refused. No code of ours signs anything here.

Needs node >= 20 and ``npm ci --prefix tests/clients/jwt`` (make test does it); without
them the test fails and says so. It never skips.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from broadcaster.auth import credentials
from tests.support.jwt_keys import SigningKey, new_key
from tests.support.jwt_keys import jwks as jwks_doc
from tests.support.procs import ROOT, Proc, own_redis, read_sse, start_frontend

pytestmark = pytest.mark.anyio

JWT_DIR = ROOT / "tests" / "clients" / "jwt"
INSTALL = "run npm ci --prefix tests/clients/jwt (make test does this)"
ADMIN = "admin-" + secrets.token_hex(8)
SECRET = secrets.token_hex(32)
AUDIENCE = "https://broadcaster.test"
KEYS = {alg: new_key(alg, f"node-{alg.lower()}") for alg in ("RS256", "ES256", "EdDSA")}


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is missing: install Node.js >= 20 with npm", pytrace=False)
    if not (JWT_DIR / "node_modules" / "jose" / "package.json").is_file():
        pytest.fail(f"tests/clients/jwt/node_modules is missing: {INSTALL}", pytrace=False)
    return found


def private_jwk(key: SigningKey) -> dict[str, Any]:
    """The private key as a JWK, as a Node backend would keep it."""
    private: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(key.alg).to_jwk(key.private))
    return private


def jose(*requests: dict[str, Any]) -> list[str]:
    """Tokens minted by mint.mjs, one per request."""
    run = subprocess.run(
        [node(), str(JWT_DIR / "mint.mjs")],
        input=json.dumps(list(requests)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    tokens: list[str] = json.loads(run.stdout)
    return tokens


def signed_by(alg: str, claims: dict[str, Any], **extra: Any) -> dict[str, Any]:
    if alg == "HS256":
        return {"alg": alg, "secret": SECRET, "claims": claims, **extra}
    key = KEYS[alg]
    return {"alg": alg, "jwk": private_jwk(key), "kid": key.kid, "claims": claims, **extra}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    logs: Path = tmp_path_factory.mktemp("jose")
    redis = own_redis(logs / "redis")
    (logs / "jwks.json").write_text(json.dumps(jwks_doc(*KEYS.values())))
    proc = start_frontend(
        redis.url,
        logs,
        "frontend-jose",
        env={
            "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
            "BROADCASTER_TOKEN_SECRET": SECRET,
            "BROADCASTER_JWKS_FILE": str(logs / "jwks.json"),
            "BROADCASTER_TOKEN_AUDIENCE": AUDIENCE,
        },
    )
    try:
        yield proc
    finally:
        proc.stop()
        redis.stop()


async def test_tokens_minted_with_jose_are_accepted(frontend: Proc) -> None:
    prefix = "jose-" + secrets.token_hex(4) + "-"
    grant = {"read": [prefix + "*"], "publish": [prefix + "*"]}
    requests = [
        signed_by(alg, {"aud": AUDIENCE, "sub": f"user-{alg}", "broadcaster": grant})
        for alg in ("HS256", "RS256", "ES256", "EdDSA")
    ]
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        for n, token in enumerate(jose(*requests)):
            sid = f"{prefix}{n}"
            url = f"/v1/streams/{sid}/events"
            r = await c.post(
                url,
                json={"type": "data-step", "data": {"n": n}},
                headers={"authorization": f"Bearer {token}"},
            )
            assert r.status_code == 201, (requests[n]["alg"], r.text)
            got = await read_sse(c, f"{url}?token={token}", stop_after=1)
            assert got.status == 200 and got.ids == [1], requests[n]["alg"]
            ds = await c.get(f"/v1/stream/{sid}", params={"offset": "-1", "token": token})
            assert ds.status_code == 200 and ds.json()[0]["data"] == {"n": n}


async def test_bad_tokens_minted_with_jose_are_refused(frontend: Proc) -> None:
    sid = "jose-refused-" + secrets.token_hex(4)
    good = {"aud": AUDIENCE, "broadcaster": {"read": [sid]}}
    stranger = new_key("ES256", "node-unknown")
    cases = {
        "expired": (signed_by("ES256", good, expiresIn=int(time.time()) - 60), 401),
        "another audience": (signed_by("RS256", {**good, "aud": "https://other.example"}), 401),
        "an unknown key": (
            {"alg": "ES256", "jwk": private_jwk(stranger), "kid": stranger.kid, "claims": good},
            401,
        ),
        "another secret": ({**signed_by("HS256", good), "secret": secrets.token_hex(32)}, 401),
        "another prefix": (
            signed_by("EdDSA", {"aud": AUDIENCE, "broadcaster": {"read": ["jose-other-*"]}}),
            403,
        ),
    }
    tokens = jose(*(request for request, _ in cases.values()))
    async with httpx.AsyncClient(base_url=frontend.url, timeout=10) as c:
        r = await c.post(
            f"/v1/streams/{sid}/events",
            json={"type": "x"},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201
        for (why, (_, status)), token in zip(cases.items(), tokens, strict=True):
            r = await c.get(f"/v1/streams/{sid}/viewers", params={"token": token})
            assert r.status_code == status, (why, r.text)
