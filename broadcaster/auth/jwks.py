"""Verifying tokens: the keys (HS256 secrets, a JWKS by URL or file) and the verifier
every access check asks (``auth/tokens.py`` has the pure rules).

A JWKS by URL is fetched off the event loop, once ``max_age`` old, and at once for an
unknown ``kid`` (a rotation) but at most once per ``min_interval`` whatever tokens say,
so made-up ``kid``s cost one fetch per interval; a failed fetch keeps the old keys. A
JWKS file is read again whenever it changes (replace it by renaming). Only RS256, ES256
and EdDSA signing keys are kept: an ``oct`` key in a public set would let anyone sign.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx2
import jwt

from broadcaster.auth import credentials, tokens
from broadcaster.auth.tokens import Grant, InvalidToken

log = logging.getLogger("broadcaster.auth")

MAX_JWKS_BYTES = 1024 * 1024
"""A larger key set is refused (and the keys already held are kept)."""


def parse_jwks(document: bytes | str) -> list[jwt.PyJWK]:
    """The usable signing keys of a JWKS document, built by PyJWT (``PyJWKSet``): keys of
    an accepted asymmetric algorithm, for signatures; ValueError for a document that is
    not a JWKS at all."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWKS: {"keys": [...]} expected')
    try:
        found = jwt.PyJWKSet.from_dict(data).keys
    except jwt.PyJWKSetError:
        found = []  # no usable key at all: an empty set, not an error
    return [
        key
        for key in found
        if key.key_type != "oct"
        and key.algorithm_name in tokens.ASYMMETRIC_ALGORITHMS
        and key.public_key_use in (None, "sig")
    ]


class KeySource:
    """Where a JWKS's keys come from. ``keys`` gives the candidates for a token's
    ``kid`` and algorithm, refreshing the set first when it must (and may)."""

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic):
        self.min_interval = min_interval
        self.clock = clock
        self._keys: list[jwt.PyJWK] = []
        self._lock = asyncio.Lock()
        self._attempted: float | None = None
        self.loads = 0
        """Successful loads of the set, for tests and logs."""

    def _matching(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        return [
            k for k in self._keys if k.algorithm_name == alg and (kid is None or k.key_id == kid)
        ]

    async def keys(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        if self._stale():
            await self._refresh()
        found = self._matching(kid, alg)
        known = kid is not None and any(k.key_id == kid for k in self._keys)
        if not found and not known:
            # An unknown kid (or, without a kid, no key of this algorithm): perhaps a key
            # was rotated in since the set was loaded.
            await self._refresh()
            found = self._matching(kid, alg)
        return found

    def _stale(self) -> bool:
        return False

    def _may_refresh(self) -> bool:
        return self._attempted is None or self.clock() - self._attempted >= self.min_interval

    async def _refresh(self) -> None:
        """Load the set again, unless it was tried within ``min_interval``: the rate
        limit, shared by the requests that wait here while one loads."""
        async with self._lock:
            if not self._may_refresh():
                return
            self._attempted = self.clock()
            try:
                keys = await self._load()
            except Exception as exc:
                held = len(self._keys)
                log.warning("JWKS not loaded (%s): keeping the %d key(s) held", exc, held)
                return
            self._keys = keys
            self.loads += 1
            log.info("JWKS loaded: %d key(s) %s", len(keys), sorted(str(k.key_id) for k in keys))

    async def _load(self) -> list[jwt.PyJWK]:
        """The keys as they are now."""
        raise NotImplementedError


Fetch = Callable[[], Awaitable[bytes]]


class UrlKeys(KeySource):
    """A JWKS served over HTTP(S): fetched at first use, again when ``max_age`` old or
    for an unknown ``kid``, never more often than every ``min_interval`` seconds."""

    def __init__(
        self,
        url: str,
        *,
        max_age: float = 300.0,
        min_interval: float = 30.0,
        timeout: float = 5.0,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min_interval, clock)
        self.url = url
        self.max_age = max_age
        self.timeout = timeout
        self._fetch = fetch or self._get
        self._loaded_at: float | None = None

    def _stale(self) -> bool:
        return (
            self._loaded_at is None or self.clock() - self._loaded_at >= self.max_age
        ) and self._may_refresh()

    async def _load(self) -> list[jwt.PyJWK]:
        keys = parse_jwks(await self._fetch())
        self._loaded_at = self.clock()
        return keys

    async def _get(self) -> bytes:
        async with (
            asyncio.timeout(self.timeout),
            httpx2.AsyncClient(
                timeout=httpx2.Timeout(self.timeout), follow_redirects=False, trust_env=False
            ) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code} from {self.url}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)


class FileKeys(KeySource):
    """A JWKS in a file, read again whenever the file changes."""

    def __init__(
        self,
        path: str | Path,
        *,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min_interval, clock)
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _stale(self) -> bool:
        return self._signature() != self._seen

    def _may_refresh(self) -> bool:
        # A changed file is always read (a stat says so, cheaply); an unknown kid in an
        # unchanged file reads it again at most every ``min_interval``.
        return self._stale() or super()._may_refresh()

    async def _load(self) -> list[jwt.PyJWK]:
        signature = self._signature()
        self._seen = signature
        if signature is None:
            raise ValueError(f"cannot stat {self.path}")
        if signature[1] > MAX_JWKS_BYTES:
            raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        document = await asyncio.to_thread(self.path.read_bytes)
        return parse_jwks(document)


class TokenVerifier:
    """Every way this deployment accepts a token: HS256 JWTs under ``secrets`` (the first
    signs what the front-end mints; all verify: a rotation), JWTs signed by a key of
    ``jwks``, and, while ``legacy`` is on, the deprecated ``v1``/``c1`` tokens. None lives
    longer than ``max_lifetime`` (None: no limit)."""

    def __init__(
        self,
        secrets: Sequence[str],
        jwks: KeySource | None = None,
        *,
        audience: str | None = None,
        leeway: float = tokens.DEFAULT_LEEWAY,
        max_lifetime: float | None = tokens.DEFAULT_MAX_LIFETIME,
        legacy: bool = False,
    ) -> None:
        self.secrets = list(secrets)
        self.jwks = jwks
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.legacy = legacy

    @property
    def signing_secret(self) -> str | None:
        return self.secrets[0] if self.secrets else None

    async def grant(self, token: str) -> Grant:
        """What a JWT opens; InvalidToken if this deployment does not accept it."""
        alg, kid = tokens.header(token)
        keys: list[Any]
        if alg == tokens.HMAC_ALGORITHM:
            if not self.secrets:
                raise InvalidToken("an HS256 token, but no token secret is configured")
            keys = self.secrets
        elif self.jwks is None:
            raise InvalidToken(f"an {alg} token, but no JWKS is configured")
        else:
            keys = await self.jwks.keys(kid, alg)
        return self._decode(token, alg, kid, keys)

    def grant_now(self, token: str) -> Grant | None:
        """``grant`` without waiting: what an HS256 JWT opens, else None (a key of the
        JWKS may need fetching; an invalid token is None too, for ``grant`` to tell)."""
        try:
            alg, kid = tokens.header(token)
            if alg != tokens.HMAC_ALGORITHM or not self.secrets:
                return None
            return self._decode(token, alg, kid, self.secrets)
        except InvalidToken:
            return None

    def _decode(self, token: str, alg: str, kid: Any, keys: list[Any]) -> Grant:
        for key in keys:
            try:
                return tokens.decode(
                    token,
                    key,
                    alg,
                    audience=self.audience,
                    leeway=self.leeway,
                    max_lifetime=self.max_lifetime,
                )
            except jwt.InvalidSignatureError:
                continue
        if alg != tokens.HMAC_ALGORITHM and not keys:
            raise InvalidToken(f"no {alg} key with kid {str(kid)[:64]!r}")
        raise InvalidToken("signature verification failed")

    def legacy_grants(self, token: str, prefix: str, name: str) -> bool:
        """Whether a legacy token of ``prefix`` (``v1``, ``c1``) opens ``name``: one that
        expires further than ``max_lifetime`` from now does not."""
        if not self.legacy:
            return False
        if not any(credentials.verify_legacy_token(prefix, s, token, name) for s in self.secrets):
            return False
        expires = int(token.split(".")[1])  # verified: digits
        if (
            self.max_lifetime is not None
            and expires > time.time() + self.max_lifetime + self.leeway
        ):
            return False
        _warn_legacy()
        return True


_warned: list[bool] = []


def _warn_legacy() -> None:
    """Once per process, on the first legacy token accepted."""
    if not _warned:
        _warned.append(True)
        log.warning(
            "a legacy v1./c1. token was accepted: these are deprecated and stop working in "
            "%s (or now, without BROADCASTER_LEGACY_TOKENS=true); mint JWTs instead "
            "(docs/security.md)",
            credentials.LEGACY_TOKENS_UNTIL,
        )
