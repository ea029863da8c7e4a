"""API keys for producers and signed, expiring viewer tokens. Pure: no I/O.

**API keys.** ``BROADCASTER_API_KEYS`` holds SHA-256 digests of the keys, never the keys:
``sha256:<hex>`` grants every right, ``sha256:<hex>:publish+tokens`` only those named.
The rights are ``generate`` (start generations), ``cancel``, ``publish`` (append to
job-progress streams) and ``tokens`` (mint viewer tokens). A presented key is hashed and
compared with every configured digest in constant time.

**Viewer tokens.** ``v1.<expiry>.<signature>``: an HMAC-SHA256, under
``BROADCASTER_TOKEN_SECRET``, of the version, the stream id and the expiry (Unix
seconds). The stream id is inside the signature, not the token, so a token for stream A
does not verify for stream B. Comparison is constant time.

**Chat tokens.** ``c1.<expiry>.<signature>``, the same HMAC over ``c1``, the chat id and
the expiry: they open one chat's routes (``/v1/chat``), and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

RIGHTS = frozenset({"generate", "cancel", "publish", "tokens"})
_PREFIX = "v1"
_CHAT_PREFIX = "c1"
"""Chat tokens sign their own prefix: a viewer token never verifies as a chat token of
the same id, nor the other way round."""


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` entry for ``BROADCASTER_API_KEYS`` that admits ``key``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    digest: bytes
    rights: frozenset[str]

    @property
    def name(self) -> str:
        """A short, non-secret label for logs and rate-limit keys."""
        return self.digest.hex()[:12]


def parse_api_keys(spec: str | None) -> list[ApiKey]:
    """Parse ``BROADCASTER_API_KEYS``; raise ValueError with the offending entry's index."""
    keys: list[ApiKey] = []
    for i, raw in enumerate(filter(None, (e.strip() for e in (spec or "").split(",")))):
        algo, _, rest = raw.partition(":")
        hexdigest, _, rights_spec = rest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: expected sha256:<64 hex>")
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: not hex") from None
        rights = frozenset(rights_spec.split("+")) if rights_spec else RIGHTS
        if not rights <= RIGHTS:
            unknown = ", ".join(sorted(rights - RIGHTS))
            raise ValueError(f"BROADCASTER_API_KEYS entry {i + 1}: unknown right(s) {unknown}")
        keys.append(ApiKey(digest, rights))
    return keys


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


def _mint(
    prefix: str, secret: str | bytes, subject: str, ttl_seconds: int, now: float | None
) -> tuple[str, int]:
    key = secret.encode() if isinstance(secret, str) else secret
    expires = int(now if now is not None else time.time()) + ttl_seconds
    return f"{prefix}.{expires}.{_sign(key, prefix, subject, expires)}", expires


def _verify(prefix: str, secret: str | bytes, token: str, subject: str, now: float | None) -> bool:
    key = secret.encode() if isinstance(secret, str) else secret
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1].isdigit() or len(parts[1]) > 12:
        return False
    expires = int(parts[1])
    good = hmac.compare_digest(_sign(key, prefix, subject, expires).encode(), parts[2].encode())
    return good and expires > (now if now is not None else time.time())


def mint_viewer_token(
    secret: str | bytes, stream_id: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    """A token that lets its holder read ``stream_id`` for ``ttl_seconds``; returns
    ``(token, expires_at)``. For the operator's own backend to hand to its viewers."""
    return _mint(_PREFIX, secret, stream_id, ttl_seconds, now)


def verify_viewer_token(
    secret: str | bytes, token: str, stream_id: str, now: float | None = None
) -> bool:
    """True only for an unexpired, untampered token minted for ``stream_id``."""
    return _verify(_PREFIX, secret, token, stream_id, now)


def mint_chat_token(
    secret: str | bytes, chat_id: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, int]:
    """A token that lets its holder use chat ``chat_id`` (submit, resume, stop, read its
    messages) for ``ttl_seconds``; returns ``(token, expires_at)``."""
    return _mint(_CHAT_PREFIX, secret, chat_id, ttl_seconds, now)


def verify_chat_token(
    secret: str | bytes, token: str, chat_id: str, now: float | None = None
) -> bool:
    """True only for an unexpired, untampered chat token minted for ``chat_id``."""
    return _verify(_CHAT_PREFIX, secret, token, chat_id, now)
