"""API keys for producers, and the viewer and chat tokens the front-end mints. Pure: no I/O.

``BROADCASTER_API_KEYS`` holds SHA-256 digests of the keys, never the keys, each with
the rights it grants (``sha256:<hex>:publish+tokens``; none named: every producer's
right but ``work`` and ``admin``); a presented key is hashed and compared in constant
time. Viewer and chat tokens are HS256 JWTs (``auth/tokens.py``). Legacy ``v1.``/``c1.``
tokens (deprecated, ``BROADCASTER_LEGACY_TOKENS``) sign the stream or chat id with the
expiry, so a token for one id never verifies for another. The rights and their
formats: docs/security.md and docs/api/access.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Collection
from dataclasses import dataclass

import jwt

from broadcaster.auth import tokens
from broadcaster.core import names

PRODUCER_RIGHTS = frozenset({"generate", "cancel", "publish", "tokens", "read"})
"""What a key that names no rights may do."""
RIGHTS = PRODUCER_RIGHTS | {"work", "admin"}
"""Every right a key may name. ``work`` and ``admin`` are never implied: a worker writes
into any generation it claims, and an admin ends every holder's open responses, which no
producer's key could do before they existed."""
VIEWER_PREFIX = "v1"
CHAT_PREFIX = "c1"
"""Legacy chat tokens sign their own prefix: a viewer token never verifies as a chat
token of the same id, nor the other way round."""
LEGACY_TOKENS_UNTIL = "0.3.0"
"""The release that stops accepting legacy tokens (not before 2027-06-01)."""


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` entry for ``BROADCASTER_API_KEYS`` that admits ``key``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    digest: bytes
    rights: frozenset[str]
    providers: frozenset[str] | None = None
    """The providers and agents a ``work`` key claims jobs of (its entry's fourth part);
    None: every provider (a key that names none, as before there were scopes)."""

    def works_for(self, provider: str) -> bool:
        """Whether this key may claim, and write, jobs of ``provider``."""
        return "work" in self.rights and (self.providers is None or provider in self.providers)

    @property
    def name(self) -> str:
        """A short, non-secret label for logs and rate-limit keys."""
        return self.digest.hex()[:12]


def parse_api_keys(spec: str | None) -> list[ApiKey]:
    """Parse ``BROADCASTER_API_KEYS``; raise ValueError with the offending entry's index."""
    keys: list[ApiKey] = []
    for i, raw in enumerate(filter(None, (e.strip() for e in (spec or "").split(",")))):
        algo, _, rest = raw.partition(":")
        hexdigest, _, rest = rest.partition(":")
        rights_spec, scoped, scope_spec = rest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: expected sha256:<64 hex>")
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: not hex") from None
        rights = frozenset(rights_spec.split("+")) if rights_spec else PRODUCER_RIGHTS
        if not rights <= RIGHTS:
            unknown = ", ".join(sorted(rights - RIGHTS))
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: unknown right(s) {unknown}")
        keys.append(ApiKey(digest, rights, _providers(i, rights, scope_spec) if scoped else None))
    return keys


def _providers(i: int, rights: frozenset[str], spec: str) -> frozenset[str]:
    """A work key's providers (``sha256:<hex>:work:openai+my-agent``), checked."""
    found = frozenset(spec.split("+"))
    bad = sorted(p for p in found if not names.is_provider_name(p))
    if "work" not in rights:
        raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: only a work key names providers")
    if bad:
        raise ValueError(
            f"BROADCASTER_API_KEYS entry {i + 1}: not a provider name: {', '.join(bad)!r} "
            "(a work key's providers: work:openai+my-agent)"
        )
    return found


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The configured key matching ``presented``; every digest is compared, in constant
    time, so the timing says nothing about which (or whether) one matched."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            found = key
    return found


def _sign(secret: bytes, prefix: str, subject: str, expires: int) -> str:
    mac = hmac.new(secret, f"{prefix}\n{subject}\n{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def mint_legacy_token(
    prefix: str, secret: str | bytes, subject: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    """A legacy ``v1``/``c1`` token, as backends that copied its signing code mint them
    (kept for the tests of the deprecation period)."""
    key = secret.encode() if isinstance(secret, str) else secret
    expires = int(now if now is not None else time.time()) + ttl_seconds
    return f"{prefix}.{expires}.{_sign(key, prefix, subject, expires)}", expires


def verify_legacy_token(
    prefix: str, secret: str | bytes, token: str, subject: str, now: float | None = None
) -> bool:
    """True only for an unexpired, untampered legacy token of ``prefix`` for ``subject``."""
    key = secret.encode() if isinstance(secret, str) else secret
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1].isdigit() or len(parts[1]) > 12:
        return False
    expires = int(parts[1])
    good = hmac.compare_digest(_sign(key, prefix, subject, expires).encode(), parts[2].encode())
    return good and expires > (now if now is not None else time.time())


def mint_viewer_token(
    secret: str | bytes,
    stream_id: str,
    ttl_seconds: int,
    now: float | None = None,
    *,
    sub: str | None = None,
    audience: str | None = None,
) -> tuple[str, int]:
    """An HS256 JWT that lets its holder read ``stream_id`` (its events, status and
    viewers, and the Durable Stream of that path) for ``ttl_seconds``; returns
    ``(token, expires_at)``. For the operator's own backend to hand to its viewers;
    ``tokens.mint_token`` mints one that opens more."""
    issued = int(time.time() if now is None else now)
    token = tokens.mint_token(
        secret, read=[stream_id], sub=sub, ttl_seconds=ttl_seconds, audience=audience, now=issued
    )
    return token, issued + ttl_seconds


CHAT_USES: tuple[tokens.ChatUse, ...] = ("read", "submit", "stop")
"""What a chat token may do with its chat; minted with all three unless told."""


def mint_chat_token(
    secret: str | bytes,
    chat_id: str,
    ttl_seconds: int,
    now: float | None = None,
    *,
    sub: str | None = None,
    audience: str | None = None,
    uses: Collection[tokens.ChatUse] = CHAT_USES,
    daily_tokens: int | None = None,
) -> tuple[str, int]:
    """An HS256 JWT that lets its holder ``uses`` chat ``chat_id`` for ``ttl_seconds``:
    ``read`` (its messages, stream, events and viewers), ``submit`` (and decide its
    approvals), ``stop``; ``daily_tokens`` lowers its holder's daily token budget;
    returns ``(token, expires_at)``."""
    issued = int(time.time() if now is None else now)
    named = [chat_id]
    token = tokens.mint_token(
        secret,
        chat_read=named if "read" in uses else (),
        chat_submit=named if "submit" in uses else (),
        cancel=named if "stop" in uses else (),
        sub=sub,
        ttl_seconds=ttl_seconds,
        audience=audience,
        now=issued,
        daily_tokens=daily_tokens,
    )
    return token, issued + ttl_seconds


def _verify(
    prefix: str,
    secret: str | bytes,
    token: str,
    name: str,
    *,
    now: float | None,
    audience: str | None,
) -> bool:
    if tokens.shape(token) == "legacy":
        return verify_legacy_token(prefix, secret, token, name, now)
    try:
        alg, _ = tokens.header(token)
        if alg != tokens.HMAC_ALGORITHM:
            return False
        grant = tokens.decode(token, secret, alg, audience=audience, now=now)
    except (tokens.InvalidToken, jwt.PyJWTError):
        return False
    if prefix == CHAT_PREFIX:
        return grant.opens_chat("read", name)
    return grant.allows("read", name)


def verify_viewer_token(
    secret: str | bytes,
    token: str,
    stream_id: str,
    now: float | None = None,
    *,
    audience: str | None = None,
) -> bool:
    """True only for an unexpired, untampered token under ``secret`` that may read
    ``stream_id``: an HS256 JWT whose ``read`` covers it, or a legacy ``v1`` token."""
    return _verify(VIEWER_PREFIX, secret, token, stream_id, now=now, audience=audience)


def verify_chat_token(
    secret: str | bytes,
    token: str,
    chat_id: str,
    now: float | None = None,
    *,
    audience: str | None = None,
) -> bool:
    """True only for an unexpired, untampered token under ``secret`` that may read chat
    ``chat_id``: an HS256 JWT whose ``chat`` or ``chat_read`` covers it, or a legacy
    ``c1`` token."""
    return _verify(CHAT_PREFIX, secret, token, chat_id, now=now, audience=audience)
