"""Test helpers for tokens: asymmetric signing keys with their public JWKs, tokens signed
by them (with PyJWT), forged ones (``alg: none``, algorithm confusion), and a JWKS served
over HTTP from 127.0.0.1 by a thread of the test, counting its fetches."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


@dataclass
class SigningKey:
    """A private key of ``alg``, named ``kid`` in its JWKS."""

    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        """The public JWK, as an identity provider publishes it."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, payload: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            payload, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def new_key(alg: str, kid: str) -> SigningKey:
    if alg == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, private)


def jwks(*keys: SigningKey | dict[str, Any]) -> dict[str, Any]:
    return {"keys": [k.jwk if isinstance(k, SigningKey) else k for k in keys]}


def claims(ttl: float = 60, **fields: Any) -> dict[str, Any]:
    """A payload expiring in ``ttl`` seconds; ``read=[...]`` and the other rights go into
    the ``broadcaster`` claim, anything else (``sub``, ``aud``, ``nbf``…) beside it."""
    rights = {r: fields.pop(r) for r in ("read", "publish", "chat", "cancel") if r in fields}
    return {"exp": int(time.time() + ttl), "broadcaster": rights, **fields}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature: what an attacker sends hoping the
    verifier takes the header's word."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(payload).encode())}."


def hmac_with(secret: bytes, payload: dict[str, Any], **headers: Any) -> str:
    """An HS256 token under any bytes, such as a public key's PEM (algorithm confusion):
    signed with the standard library's HMAC, since PyJWT refuses a PEM as an HMAC key."""
    import hashlib
    import hmac

    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **headers}).encode())
    body = _b64(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


@dataclass
class JwksServer:
    """A JWKS at ``url``, changed by assigning ``document``; ``fetches`` counts GETs."""

    document: dict[str, Any]
    port: int = 0
    fetches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"


@contextmanager
def serve_jwks(document: dict[str, Any]) -> Iterator[JwksServer]:
    """Serve ``document`` on 127.0.0.1 (a free port) until the block ends."""
    state = JwksServer(document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state._lock:
                state.fetches += 1
                body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
