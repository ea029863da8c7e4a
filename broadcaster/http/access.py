"""Who may do what (docs/security.md): producers' API keys with their rights, the rate per
key, and tokens (JWTs, and the deprecated legacy ones), as FastAPI dependencies and the
checkers the routes call. Credentials are read from the ``Request``, not declared as
parameters: the OpenAPI document describes the routes, not the credentials.

401 ``unauthorized`` (with ``WWW-Authenticate: Bearer``) for no credential or one not
valid here; 401 ``token_expired``/``token_revoked``; 403 ``forbidden`` for a valid one
that does not cover what is asked. A JWT's ``sub`` becomes ``request.state.subject``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request

from broadcaster.auth import credentials, quota, tokens
from broadcaster.auth.jwks import FileKeys, KeySource, TokenVerifier, UrlKeys
from broadcaster.auth.revocations import Revocations
from broadcaster.auth.tokens import Grant
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import RedisDep, SettingsDep, get_redis, get_settings
from broadcaster.http.settings import Settings
from broadcaster.viewers.ask import bearer_of, keep_grant, kept_grant, token_of
from broadcaster.viewers.decision import read_refusal, token_ended
from broadcaster.viewers.refusals import Refusal

log = logging.getLogger("broadcaster.auth")

_BEARER = {"www-authenticate": "Bearer"}
_JWT_RIGHTS: dict[str, tokens.Right] = {"publish": "publish", "cancel": "cancel"}
"""The API-key rights a token may hold too; ``generate`` and ``tokens`` need a key."""


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What the settings say about access, parsed once: the producers' keys (none: anyone
    may produce) and the verifier of tokens (None, without a secret or a JWKS: anyone may
    read)."""

    api_keys: list[credentials.ApiKey]
    verifier: TokenVerifier | None = None

    @property
    def token_secret(self) -> str | None:
        """The secret the front-end signs the tokens it mints with (None: it mints none)."""
        return self.verifier.signing_secret if self.verifier else None

    @property
    def audience(self) -> str | None:
        return self.verifier.audience if self.verifier else None

    @property
    def reads_guarded(self) -> bool:
        """Whether reading needs a token."""
        return self.verifier is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Raises ValueError on a malformed ``BROADCASTER_API_KEYS`` or token settings: a
        bad entry stops the start, it is not ignored."""
        secrets = settings.token_secret_list()
        jwks = _key_source(settings)
        if settings.metrics_key is not None and not settings.metrics_key.get_secret_value().strip():
            raise ValueError("BROADCASTER_METRICS_KEY is empty: set a key, or unset it")
        if settings.token_audience is not None and not settings.token_audience.strip():
            raise ValueError(
                "BROADCASTER_TOKEN_AUDIENCE is empty: set the aud tokens must carry, or unset it"
            )
        if settings.token_ttl_seconds > settings.token_max_lifetime_seconds:
            raise ValueError(
                f"BROADCASTER_TOKEN_TTL_SECONDS ({settings.token_ttl_seconds}) is above "
                f"BROADCASTER_TOKEN_MAX_LIFETIME_SECONDS ({settings.token_max_lifetime_seconds}):"
                " the tokens the front-end mints would be refused"
            )
        verifier = None
        if secrets or jwks:
            verifier = TokenVerifier(
                secrets,
                jwks,
                audience=settings.token_audience,
                leeway=settings.token_leeway_seconds,
                max_lifetime=settings.token_max_lifetime_seconds,
                legacy=settings.legacy_tokens,
            )
        api_keys = credentials.parse_api_keys(settings.api_keys)
        for key in api_keys:
            if "work" in key.rights and key.providers is None:
                log.warning(
                    "API key %s may work for every provider, and so read every tenant's "
                    "prompts: name its providers (sha256:<hex>:work:openai+my-agent)",
                    key.name,
                )
        return cls(api_keys, verifier)


def _key_source(settings: Settings) -> KeySource | None:
    if settings.jwks_url and settings.jwks_file:
        raise ValueError("set BROADCASTER_JWKS_URL or BROADCASTER_JWKS_FILE, not both")
    interval = settings.jwks_min_interval_seconds
    if settings.jwks_file:
        return FileKeys(settings.jwks_file, min_interval=interval)
    if not settings.jwks_url:
        return None
    url = urlsplit(settings.jwks_url)
    loopback = url.hostname in ("127.0.0.1", "::1", "localhost")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ValueError(
            "BROADCASTER_JWKS_URL must be https (http only on loopback): whoever can "
            "change the keys in transit could sign tokens"
        )
    return UrlKeys(settings.jwks_url, max_age=settings.jwks_max_age_seconds, min_interval=interval)


async def get_access(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.access
    return policy


AccessDep = Annotated[AccessPolicy, Depends(get_access)]


def bearer(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, if any."""
    return bearer_of(request.headers.get("authorization"))


def presented_token(request: Request) -> str | None:
    """``token_of`` the request."""
    return token_of(request.headers.get("authorization"), request.query_params.get("token"))


async def presented_key(request: Request) -> credentials.ApiKey | None:
    """The configured API key the request presents, or None (no key, an unknown one, a
    JWT, or no keys configured). Cached per request by FastAPI: hashed once for all its
    users."""
    policy = await get_access(request)
    presented = bearer(request)
    if not presented or not policy.api_keys or tokens.shape(presented) == "jwt":
        return None
    return credentials.find_key(policy.api_keys, presented)


KeyDep = Annotated[credentials.ApiKey | None, Depends(presented_key)]


def as_error(refusal: Refusal) -> ApiError:
    """A viewer's refusal (``viewers.decision``) as the error a route raises."""
    return ApiError(
        refusal.status, refusal.code, refusal.message, headers=refusal.headers, **refusal.extra
    )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_BEARER)


async def token_grant(request: Request, verifier: TokenVerifier, token: str) -> Grant:
    """What the JWT ``token`` opens, verified once per request; 401 if it is not valid
    here (the reason is in the message: expired, bad signature, audience, key…)."""
    kept = kept_grant(request, token)
    if kept is not None:
        return kept
    try:
        grant = await verifier.grant(token)
    except tokens.TokenExpired:
        raise as_error(token_ended("expired")) from None
    except tokens.InvalidToken as exc:
        raise _unauthorized(f"the token is not valid here: {str(exc)[:200]}") from None
    revocations: Revocations | None = getattr(request.app.state, "revocations", None)
    if revocations is not None and revocations.grant_revoked(grant):
        raise as_error(token_ended("revoked"))
    keep_grant(request, token, grant)
    if grant.subject:
        request.state.subject = grant.subject
    return grant


def token_rate_name(grant: Grant, token: str) -> str:
    """The name a token's requests are counted under: its subject (every token of one
    holder shares it), else the token itself."""
    who = f"sub:{grant.subject}" if grant.subject else f"token:{token}"
    return "t" + hashlib.sha256(who.encode()).hexdigest()[:12]


def _resource(request: Request) -> str | None:
    """The stream or Durable Streams path a producing route acts on."""
    params = request.path_params
    name: str | None = params.get("stream_id") or params.get("path")
    return name


class ApiKeyRight:
    """``Depends(ApiKeyRight("publish"))``: with API keys configured, 401 without a known
    key or a valid token and 403 when the key lacks the right. A JWT stands in for a key
    on the stream or path the route names (``stream_id``, or ``path``) when it grants
    that right there: ``publish`` and ``cancel`` only (``generate`` and ``tokens`` need
    a key); 403 otherwise."""

    def __init__(self, right: str) -> None:
        if right not in credentials.RIGHTS:
            raise ValueError(f"no such right: {right!r}")
        self.right = right

    async def __call__(self, request: Request, key: KeyDep) -> None:
        policy = await get_access(request)
        if not policy.api_keys:
            return
        credential = bearer(request)
        if credential and policy.verifier and tokens.shape(credential) == "jwt":
            grant = await token_grant(request, policy.verifier, credential)
            name, right = _resource(request), _JWT_RIGHTS.get(self.right)
            if right is None or name is None or not grant.allows(right, name):
                what = f"{self.right} {name[:80]!r}" if name and right else self.right
                raise ApiError(403, "forbidden", f"this token may not {what}")
            request.state.rate_name = token_rate_name(grant, credential)
            return
        if key is None:
            raise _unauthorized("an API key is required: Authorization: Bearer <key>")
        if self.right not in key.rights:
            raise ApiError(403, "forbidden", f"this API key may not {self.right}")


async def metrics_key(request: Request) -> None:
    """``Depends(metrics_key)``: with ``BROADCASTER_METRICS_KEY`` set, 401 unless the
    request presents it as ``Authorization: Bearer``. Compared as SHA-256 digests in
    constant time, so the timing tells nothing about the key."""
    settings = await get_settings(request)
    if settings.metrics_key is None:
        return
    expected = hashlib.sha256(settings.metrics_key.get_secret_value().encode()).digest()
    presented = hashlib.sha256((bearer(request) or "").encode()).digest()
    if not hmac.compare_digest(presented, expected):
        raise _unauthorized("/metrics needs the metrics key: Authorization: Bearer <key>")


async def rate_limit(request: Request, key: KeyDep, redis: RedisDep, settings: SettingsDep) -> None:
    """429 past ``rate_limit_per_minute`` requests by this key (or this token's subject,
    or this token when it names none) in this minute. Counted in Redis, so every
    front-end shares the count; without either there is nothing to count
    (``ApiKeyRight`` has answered already)."""
    name = key.name if key is not None else getattr(request.state, "rate_name", None)
    if name is None or not settings.rate_limit_per_minute:
        return
    if (await quota.charge(redis, name)).total > settings.rate_limit_per_minute:
        raise ApiError(
            429,
            "rate_limited",
            f"over {settings.rate_limit_per_minute} requests per minute for this key",
            headers={"retry-after": str(quota.retry_after())},
        )


async def submit_rate(request: Request, key: KeyDep) -> None:
    """429 past ``submit_rate_per_minute`` submits (generations started: a chat submit,
    an AG-UI run, ``POST /v1/generations``) in this minute by this key, or this token's
    subject (this token, when it names none): what one user may start, beside what one
    key may ask for (``rate_limit``). After the access check, which names the caller."""
    settings = await get_settings(request)
    name = key.name if key is not None else getattr(request.state, "rate_name", None)
    limit = settings.submit_rate_per_minute
    if name is None or not limit:
        return
    if (await quota.charge(await get_redis(request), "s" + name)).total > limit:
        raise ApiError(
            429,
            "rate_limited",
            f"over {limit} submits per minute for this key or token holder",
            headers={"retry-after": str(quota.retry_after())},
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request that starts generations is for (their user: what their usage is
    counted under), and the daily token budget its token sets, if it sets one."""

    user: str | None
    daily_tokens: int | None = None


async def caller(request: Request) -> Caller:
    """After the access check: ``sub:<sub>`` for a JWT that names its holder (a chat's
    owner is named the same way), ``token:<12 hex digits of its hash>`` for one that
    names none (its own user, as its rates count it), ``key:<name>`` for an API key;
    nobody without either (no keys configured)."""
    cached: tuple[str, Grant] | None = getattr(request.state, "token_grant", None)
    if cached is not None:
        token, grant = cached
        if grant.subject:
            return Caller(f"sub:{grant.subject}", grant.daily_tokens)
        return Caller(
            "token:" + hashlib.sha256(token.encode()).hexdigest()[:12], grant.daily_tokens
        )
    key = await presented_key(request)
    return Caller(f"key:{key.name}" if key is not None else None)


def producer(right: str) -> list[Any]:
    """The ``dependencies=`` of a producer's route: the key and its right, then its rate."""
    return [Depends(ApiKeyRight(right)), Depends(rate_limit)]


async def authorize_read(
    request: Request, streams: Sequence[str], prefixes: Sequence[str] = ()
) -> None:
    """May this request read every stream (or Durable Streams path) in ``streams`` and
    every stream whose name starts with one of ``prefixes``? With tokens configured
    (a secret or a JWKS): 401 without a valid token (Bearer or ``?token=``), 403 for a
    valid JWT whose ``read`` does not cover them all (a prefix only by a prefix entry:
    ``jobs-user42-*`` covers the prefix ``jobs-user42-``, an exact entry never covers a
    prefix). The whole request is refused; nothing is read. A legacy ``v1`` token opens
    its one stream, never a prefix. The JWT's ``sub`` becomes the viewer's subject."""
    policy = await get_access(request)
    verifier = policy.verifier
    if verifier is None:
        return
    token = presented_token(request)
    grant = None
    if token and tokens.shape(token) == "jwt":
        grant = await token_grant(request, verifier, token)
    refusal = read_refusal(verifier, token, grant, streams, prefixes)
    if refusal is not None:
        raise as_error(refusal)


async def check_viewer(request: Request, stream_id: str) -> None:
    """``authorize_read`` of one stream or Durable Streams path. Called by ``viewer_token``
    and by the SSE route itself, whose fast path runs no dependencies."""
    await authorize_read(request, [stream_id])


def viewer_subject(request: Request) -> str | None:
    """Who the viewer is, if its token says (what viewer counts report); None for tokens
    that name nobody."""
    subject: str | None = getattr(request.state, "subject", None)
    return subject


async def viewer_token(request: Request, stream_id: str) -> None:
    """The dependency form of ``check_viewer``."""
    await check_viewer(request, stream_id)


_CHAT_KEY_RIGHTS: dict[tokens.ChatUse, str] = {
    "read": "read",
    "submit": "generate",
    "stop": "cancel",
}
"""The API-key right each use of a chat needs."""


async def credential_first(request: Request, use: tokens.ChatUse) -> None:
    """Before a byte of a chat route's body is read: 401 at once without a credential
    that is valid here (none, a JWT that does not verify, an unknown key), 403 for a key
    without the use's right. Which chat the credential opens is ``check_chat``'s, once
    the body names it."""
    policy = await get_access(request)
    if policy.verifier is None and (use == "read" or not policy.api_keys):
        return  # reading is open without tokens, as streams are
    token = presented_token(request)
    kind = tokens.shape(token) if token else None
    if token and kind == "jwt" and policy.verifier is not None:
        try:
            await token_grant(request, policy.verifier, token)
        except ApiError as exc:
            exc.extra["headers"] = exc.extra.get("headers", {}) | unread_body_closes(request)
            raise
        return
    if token and kind == "legacy" and policy.verifier is not None:
        return  # its chat is inside its signature: checked with the chat id
    key = await presented_key(request)
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "a chat token for this chat (or an API key) is required: Authorization: Bearer",
            headers=_BEARER | unread_body_closes(request),
        )
    if _CHAT_KEY_RIGHTS[use] not in key.rights:
        raise ApiError(
            403,
            "forbidden",
            f"this API key may not {_CHAT_KEY_RIGHTS[use]}",
            headers=unread_body_closes(request),
        )


UNREAD_BODY_BYTES = 64 * 1024
"""A refused request announcing a larger body (or a chunked one) has its connection
closed rather than its body parsed to keep the connection alive."""


def unread_body_closes(request: Request) -> dict[str, str]:
    """``Connection: close`` for an answer given before a large body was read: the
    transport then closes the connection lingering (what the client still sends is
    dropped unparsed, for a bounded time: ``transport/linger.py``), so the client reads
    the answer rather than a reset."""
    declared = request.headers.get("content-length", "")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    large = declared.isdigit() and int(declared) > UNREAD_BODY_BYTES
    return {"connection": "close"} if large or chunked else {}


async def check_chat(request: Request, chat_id: str, use: tokens.ChatUse) -> None:
    """A chat route's access, then its rate. A JWT opens the chat for ``use`` when its
    ``chat`` right, or that use's own (``chat_read``, ``chat_submit``, ``cancel``), covers
    the chat; any other valid JWT is 403. A legacy chat token for this very chat opens it
    whole. Otherwise an API key with the use's right (``read``, ``generate``, ``cancel``):
    401 without one, 403 for a key without it; but with no token verifier configured,
    reading is open to anyone, as streams are. What a token or a key opens is counted
    towards its rate (``rate_limit``): per subject for a token, per key for a key."""
    opener = await _chat_opener(request, chat_id, use)
    if isinstance(opener, Grant):
        request.state.rate_name = token_rate_name(opener, presented_token(request) or "")
        await _charge(request, None)
    elif opener is not None:
        await _charge(request, opener)


async def chat_opens(request: Request, chat_id: str, use: tokens.ChatUse) -> bool:
    """Whether the request's credential opens the chat for ``use`` as well (``check_chat``
    without its refusal, nor another count towards the rate)."""
    try:
        await _chat_opener(request, chat_id, use)
    except ApiError:
        return False
    return True


async def _chat_opener(
    request: Request, chat_id: str, use: tokens.ChatUse
) -> Grant | credentials.ApiKey | None:
    """What opens the chat for ``use`` (``check_chat``): a JWT's grant, an API key, or
    nothing to count (a legacy chat token, an open deployment); else 401 or 403."""
    policy = await get_access(request)
    token = presented_token(request)
    kind = tokens.shape(token) if token else None
    verifier = policy.verifier
    if verifier is not None and token and kind == "jwt":
        grant = await token_grant(request, verifier, token)
        if not grant.opens_chat(use, chat_id):
            raise ApiError(403, "forbidden", f"this token may not {use} chat {chat_id[:80]!r}")
        return grant
    if verifier is not None and token and kind == "legacy":  # noqa: SIM102
        if verifier.legacy_grants(token, credentials.CHAT_PREFIX, chat_id):
            return None
    key = await presented_key(request)
    if not policy.api_keys and verifier is None:
        return None
    if key is None:
        if verifier is None and use == "read":
            return None
        raise _unauthorized(
            "a chat token for this chat (or an API key) is required: Authorization: Bearer"
        )
    if _CHAT_KEY_RIGHTS[use] not in key.rights:
        raise ApiError(403, "forbidden", f"this API key may not {_CHAT_KEY_RIGHTS[use]}")
    return key


async def _charge(request: Request, key: credentials.ApiKey | None) -> None:
    await rate_limit(request, key, await get_redis(request), await get_settings(request))


async def worker_key(request: Request, key: KeyDep) -> None:
    """``Depends(worker_key)``: the routes of the worker protocol (``/v1/worker``). With
    API keys configured, an API key with the ``work`` right (401 without a known key, 403
    for a key without it or for a token: a worker writes into any generation it claims,
    which no token grants). Without keys (the loopback dev mode) only a client on
    loopback (403 otherwise, whatever ``--insecure`` opened): not rate limited, a worker
    renews and appends often."""
    policy = await get_access(request)
    if not policy.api_keys:
        host = request.client.host if request.client else ""
        if not _loopback(host):
            raise ApiError(
                403,
                "forbidden",
                "the worker routes need an API key with the work right "
                "(BROADCASTER_API_KEYS); without keys they answer only loopback",
            )
        return
    credential = bearer(request)
    if credential and tokens.shape(credential) == "jwt":
        raise ApiError(403, "forbidden", "a worker needs an API key with the work right")
    if key is None:
        raise _unauthorized("an API key with the work right is required: Authorization: Bearer")
    if "work" not in key.rights:
        raise ApiError(403, "forbidden", "this API key may not work (claim jobs)")
    request.state.work_key = key


def check_work_scope(request: Request, provider: str) -> None:
    """403 unless the request's work key (``worker_key``) may claim and write jobs of
    ``provider``: a key scoped to providers and agents claims no other job. Without keys
    (loopback) any."""
    key: credentials.ApiKey | None = getattr(request.state, "work_key", None)
    if key is not None and not key.works_for(provider):
        raise ApiError(403, "forbidden", f"this work key may not take jobs of {provider[:80]!r}")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
