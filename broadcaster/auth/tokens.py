"""Access tokens: standard JSON Web Tokens (RFC 7519), signed and verified by PyJWT, never
by code of ours. Pure: no I/O (the keys of a JWKS come from ``auth/jwks.py``).

A token's ``broadcaster`` claim lists what it opens (``read``, ``publish``, ``cancel``,
the chat rights, ``daily_tokens``), each a list of ids where a trailing ``*`` is a
prefix; an absent right grants nothing. HS256 with the deployment's secrets, RS256,
ES256 and EdDSA with a JWKS's keys, each key bound to its own algorithm so a public key
is never an HMAC secret. The claims and rights: docs/security.md and docs/api/access.md.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

HMAC_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
ALGORITHMS = frozenset({HMAC_ALGORITHM}) | ASYMMETRIC_ALGORITHMS
"""Every algorithm a token may be signed with; a token naming another is refused."""

CLAIM = "broadcaster"
BUDGET_CLAIM = "daily_tokens"
"""The key of the claim that lowers its holder's daily token budget."""
RIGHTS = ("read", "publish", "chat", "cancel", "chat_read", "chat_submit")
Right = Literal["read", "publish", "chat", "cancel", "chat_read", "chat_submit"]
ChatUse = Literal["read", "submit", "stop"]
"""What a request does with a chat; each is one right of a token (``CHAT_USES``)."""
CHAT_USES: dict[ChatUse, Right] = {"read": "chat_read", "submit": "chat_submit", "stop": "cancel"}
"""The right that opens each use of a chat (``chat`` opens them all)."""

DEFAULT_LEEWAY = 5.0
"""Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat`` (the issuer's clock and
ours may differ by that much)."""
DEFAULT_MAX_LIFETIME = 86400.0
"""The longest a token may live (``BROADCASTER_TOKEN_MAX_LIFETIME_SECONDS``): its ``exp``
at most that far from now, its ``exp - iat`` at most that long."""
MAX_TOKEN_CHARS = 16 * 1024
"""A longer credential is refused before it is parsed."""
MAX_SUBJECT_CHARS = 256
"""A longer ``sub`` is refused: subjects are stored with the viewer counts."""
MAX_KID_CHARS = 256
"""A longer ``kid`` is refused: no key set names its keys at such length."""

_JWT_SHAPE = re.compile(r"\AeyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\Z", re.ASCII)
_LEGACY_SHAPE = re.compile(r"\A[vc]1\.[0-9]{1,12}\.[A-Za-z0-9_-]+\Z", re.ASCII)


class InvalidToken(Exception):
    """Not a valid token for this deployment (bad signature, expired, not yet valid,
    another audience, an algorithm or a key we do not accept, a malformed claim). The
    message says which, for logs; the client is told only 401."""


class TokenExpired(InvalidToken):
    """A token whose ``exp`` (plus the leeway) has passed: valid once, and a new one
    opens what it opened (the client is told ``token_expired``)."""


def shape(credential: str) -> Literal["jwt", "legacy", "other"]:
    """What a presented credential is, by its shape alone."""
    if _JWT_SHAPE.fullmatch(credential):
        return "jwt"
    if _LEGACY_SHAPE.fullmatch(credential):
        return "legacy"
    return "other"


def covers(entry: str, name: str) -> bool:
    """Whether one entry of a right names ``name``: equal, or a prefix of it (``x*``)."""
    if entry.endswith("*"):
        return name.startswith(entry[:-1])
    return entry == name


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token opens, and who holds it; ``expires`` (its ``exp``),
    ``issued`` (its ``iat``) and ``jti`` (its id) say when it ends and name it for a
    revocation, and take no part in comparing what two grants open."""

    subject: str | None = None
    read: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    chat: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    chat_read: tuple[str, ...] = ()
    chat_submit: tuple[str, ...] = ()
    expires: float | None = field(default=None, compare=False)
    jti: str | None = field(default=None, compare=False)
    daily_tokens: int | None = field(default=None, compare=False)
    """The holder's daily token budget, when the token lowers the deployment's."""
    issued: float | None = field(default=None, compare=False)

    def entries(self, right: Right) -> tuple[str, ...]:
        entries: tuple[str, ...] = getattr(self, right)
        return entries

    def allows(self, right: Right, name: str) -> bool:
        """Whether the token may ``right`` the stream, chat or path ``name``."""
        return any(covers(entry, name) for entry in self.entries(right))

    def opens_chat(self, use: ChatUse, chat_id: str) -> bool:
        """Whether the token may ``use`` chat ``chat_id``: its ``chat`` right, or the one
        right of that use."""
        return self.allows("chat", chat_id) or self.allows(CHAT_USES[use], chat_id)

    def allows_prefix(self, right: Right, prefix: str) -> bool:
        """Whether the token may ``right`` every name that starts with ``prefix``: only a
        prefix entry can say so (``jobs-user42-*`` covers ``jobs-user42-`` and
        ``jobs-user42-a``); an exact entry never covers a prefix."""
        return any(
            entry.endswith("*") and prefix.startswith(entry[:-1]) for entry in self.entries(right)
        )


def is_budget(value: Any) -> bool:
    """Whether ``value`` may be a ``daily_tokens`` claim: a non-negative integer."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def grant_of(payload: Mapping[str, Any]) -> Grant:
    """The grant of a verified payload; InvalidToken for a malformed ``sub`` or claim."""
    subject = payload.get("sub")
    if subject is not None and (not isinstance(subject, str) or len(subject) > MAX_SUBJECT_CHARS):
        raise InvalidToken(f"sub must be a string of at most {MAX_SUBJECT_CHARS} characters")
    claim = payload.get(CLAIM, {})
    if not isinstance(claim, dict):
        raise InvalidToken(f"the {CLAIM} claim must be an object")
    rights: dict[str, tuple[str, ...]] = {}
    for right in RIGHTS:
        entries = claim.get(right, [])
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise InvalidToken(f"{CLAIM}.{right} must be a list of non-empty strings")
        rights[right] = tuple(entries)
    budget = claim.get(BUDGET_CLAIM)
    if budget is not None and not is_budget(budget):
        raise InvalidToken(f"{CLAIM}.{BUDGET_CLAIM} must be a non-negative integer")
    jti = payload.get("jti")
    jti = jti if isinstance(jti, str) and jti else None  # PyJWT refuses a jti of another type
    expires, issued = _time(payload.get("exp")), _time(payload.get("iat"))
    return Grant(
        subject or None, **rights, expires=expires, jti=jti, daily_tokens=budget, issued=issued
    )


def _time(value: Any) -> float | None:
    """A NumericDate as seconds, or None (absent; ``_check_times`` refuses another type)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def header(token: str) -> tuple[str, str | None]:
    """The algorithm and key id a token names (unverified: they only choose the key);
    InvalidToken for a malformed header (not base64url JSON, not an object, an ``alg``
    or a ``kid`` that is not a string, a ``kid`` too long) or an algorithm we do not
    accept. Nothing else is raised, whatever the token holds."""
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken(f"longer than {MAX_TOKEN_CHARS} characters")
    try:
        head = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed header: {str(exc)[:120]}") from None
    except (ValueError, TypeError, RecursionError):  # PyJWT's own checks missed it
        raise InvalidToken("malformed header") from None
    alg, kid = head.get("alg"), head.get("kid")
    if not isinstance(alg, str):
        raise InvalidToken("malformed header: alg must be a string")
    if alg not in ALGORITHMS:
        raise InvalidToken(f"algorithm {alg[:20]!r} is not accepted")
    if "kid" in head and not isinstance(kid, str):
        raise InvalidToken("malformed header: kid must be a string")
    if kid is not None and len(kid) > MAX_KID_CHARS:
        raise InvalidToken(f"malformed header: kid longer than {MAX_KID_CHARS} characters")
    return alg, kid


def decode(
    token: str,
    key: str | bytes | jwt.PyJWK,
    algorithm: str,
    *,
    audience: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
    max_lifetime: float | None = None,
    now: float | None = None,
) -> Grant:
    """The grant of ``token`` verified with ``key`` for ``algorithm`` alone (a JWKS key
    is also bound to its own algorithm by PyJWT). Raises ``jwt.InvalidSignatureError``
    when the signature is not ``key``'s (the caller may try its next key) and
    InvalidToken for anything else wrong. ``max_lifetime``: refuse a token that expires
    more than that many seconds from now (plus the leeway), or whose ``exp - iat`` is
    longer. ``now``: check the times at that instant rather than the clock's (tests)."""
    times = now is None
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            leeway=leeway,
            options={
                "require": ["exp"],
                # ``_check_times`` says whether it expired, once it is a number: PyJWT
                # would call a malformed one ("9") expired.
                "verify_exp": False,
                "verify_nbf": times,
                "verify_iat": times,
            },
        )
    except jwt.InvalidSignatureError:
        raise
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken(f"aud: {exc}") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)[:200]) from None
    _check_audience(payload)
    _check_times(payload, time.time() if now is None else now, leeway, max_lifetime)
    return grant_of(payload)


def _check_audience(payload: Mapping[str, Any]) -> None:
    """An ``aud`` that is there names someone: a non-empty string or a non-empty list of
    them. PyJWT takes an empty one (``""``, ``[]``, ``null``) for no audience, and does
    not mind an empty string beside ours in a list."""
    if "aud" not in payload:
        return
    aud = payload["aud"]
    names = aud if isinstance(aud, list) else [aud]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidToken("aud must be a non-empty string or a list of them")


def _check_times(
    payload: Mapping[str, Any], now: float, leeway: float, max_lifetime: float | None
) -> None:
    """``exp``, ``nbf`` and ``iat`` are finite numbers (PyJWT also takes strings and
    booleans, and ``decode(now=…)`` skips its checks), the token is valid at ``now``, and
    it lives at most ``max_lifetime``."""
    for name in ("exp", "nbf", "iat"):
        value = payload.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(f"{name} must be a number")
        if not math.isfinite(value):
            raise InvalidToken(f"{name} must be a finite number")
    exp = payload["exp"]
    if exp <= now - leeway:
        raise TokenExpired("Signature has expired")
    if payload.get("nbf", 0) > now + leeway or payload.get("iat", 0) > now + leeway:
        raise InvalidToken("The token is not yet valid")
    if max_lifetime is None:
        return
    if exp > now + max_lifetime + leeway:
        raise InvalidToken(
            f"exp is too far ahead: tokens here live at most {max_lifetime:.0f} s from now"
        )
    if "iat" in payload and exp - payload["iat"] > max_lifetime:
        raise InvalidToken(f"exp - iat is too long: tokens here live at most {max_lifetime:.0f} s")


def _claim(asked: dict[str, Iterable[str]], daily_tokens: int | None) -> dict[str, list[str] | int]:
    """The ``broadcaster`` claim of a token minted with the rights ``asked`` (each a list
    of non-empty names; an empty one left out) and a ``daily_tokens`` budget."""
    claim: dict[str, list[str] | int] = {}
    for right, entries in asked.items():
        if isinstance(entries, str):
            raise TypeError(f"{right}: a list of names, not one string")
        names = list(entries)
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{right}: names are non-empty strings")
        if names:
            claim[right] = names
    if daily_tokens is not None:
        if not is_budget(daily_tokens):
            raise ValueError(f"{BUDGET_CLAIM}: a non-negative integer")
        claim[BUDGET_CLAIM] = daily_tokens
    return claim


def mint_token(
    secret: str | bytes,
    *,
    read: Iterable[str] = (),
    publish: Iterable[str] = (),
    chat: Iterable[str] = (),
    cancel: Iterable[str] = (),
    chat_read: Iterable[str] = (),
    chat_submit: Iterable[str] = (),
    sub: str | None = None,
    ttl_seconds: int,
    audience: str | None = None,
    now: float | None = None,
    daily_tokens: int | None = None,
) -> str:
    """An HS256 JWT, signed with ``secret`` (``BROADCASTER_TOKEN_SECRET``), that opens
    what it lists for ``ttl_seconds``: ``read``, ``publish``, ``chat``, ``cancel``,
    ``chat_read`` and ``chat_submit`` each name stream ids, chat ids or Durable Streams
    paths, an entry ending in ``*`` being a prefix. ``sub`` names the holder (viewer
    counts report it); ``audience`` must be ``BROADCASTER_TOKEN_AUDIENCE`` when the
    deployment sets one; ``daily_tokens`` lowers the holder's daily token budget. Any JWT
    library mints the same token (docs/security.md)."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError("ttl_seconds must be an integer >= 1")
    asked = {
        "read": read,
        "publish": publish,
        "chat": chat,
        "cancel": cancel,
        "chat_read": chat_read,
        "chat_submit": chat_submit,
    }
    claim = _claim(asked, daily_tokens)
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"iat": issued, "exp": issued + ttl_seconds, CLAIM: claim}
    payload["jti"] = secrets.token_urlsafe(12)  # names it for a revocation by id
    if sub is not None:
        if not sub or len(sub) > MAX_SUBJECT_CHARS:
            raise ValueError(f"sub: 1 to {MAX_SUBJECT_CHARS} characters")
        payload["sub"] = sub
    if audience is not None:
        if not audience:
            raise ValueError("audience: a non-empty string (or None)")
        payload["aud"] = audience
    return jwt.encode(payload, secret, algorithm=HMAC_ALGORITHM)
