"""What a viewer's request asks (``ViewerAsk``), read once, by one of two small readers:
``from_request`` (a request of the app) and ``from_head`` (the parser's head, for the
viewers answered without the app). Both read the same things the same way: the resume
point (``Last-Event-ID``, else ``?last_event_id``), the token (``Authorization: Bearer``,
else ``?token``), the client's address (the peer, or behind a trusted proxy the hop of
``X-Forwarded-For`` it names) and the flags (``presence``, ``compact``, ``caught_up``,
``reset_step``). No route reads these headers itself.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from starlette.requests import Request

from broadcaster.auth.tokens import Grant
from broadcaster.chat.reset_step import HEADER as RESET_HEADER
from broadcaster.chat.reset_step import wanted as reset_step_wanted
from broadcaster.viewers.proxies import UNTRUSTED

YES = ("1", "true")


class ViewerAsk(NamedTuple):
    """A viewer's request: the streams it reads (one, for most routes), its resume point
    as sent (None: from the start), its token, its address, and its flags. (A tuple:
    every viewer's request makes one, and a frozen dataclass sets each of its fields
    through ``object.__setattr__``.)"""

    stream_ids: tuple[str, ...]
    resume: str | None = None
    token: str | None = None
    address: str | None = None
    presence: bool = False
    compact: bool = False
    caught_up: bool = False
    reset_step: bool = False


def bearer_of(authorization: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, if any (of the first
    ``Authorization`` header: the one a request's headers give)."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_of(authorization: str | None, query_token: str | None) -> str | None:
    """A token, as ``Authorization: Bearer`` or, from an ``EventSource`` (which cannot set
    headers), the ``token`` query parameter; the header wins."""
    return bearer_of(authorization) or query_token or None


def resume_of(request: Request, *, query: bool = True) -> str | None:
    """The resume point a request sends: ``Last-Event-ID``, or, when it is absent or empty
    (an ``EventSource`` that saw nothing sends none) and ``query``, ``?last_event_id``."""
    raw = request.headers.get("last-event-id")
    if not raw and query:
        return request.query_params.get("last_event_id", raw)
    return raw


def from_request(
    request: Request, stream_ids: Sequence[str] = (), *, query_resume: bool = True
) -> ViewerAsk:
    """What a request of the app asks, reading ``stream_ids``."""
    q = request.query_params
    return ViewerAsk(
        tuple(stream_ids),
        resume_of(request, query=query_resume),
        token_of(request.headers.get("authorization"), q.get("token")),
        client_address(request),
        _flag(q, "presence"),
        _flag(q, "compact"),
        _flag(q, "caught_up"),
        reset_step_wanted(request.headers, q),
    )


Trusted = Callable[[str, str], str | None]
"""``trusted(peer, x_forwarded_for)``: the client's address behind a trusted proxy
(None: the peer is no trusted proxy), as uvicorn's proxy headers middleware finds it."""

RESET = RESET_HEADER.encode()
READ = frozenset((b"last-event-id", b"authorization", b"x-forwarded-for", b"forwarded", RESET))
"""The headers ``from_head`` reads (names lowercased, as the parser gives them)."""


def from_head(
    stream_id: str,
    query: bytes | None,
    headers: Sequence[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    trusted: Trusted | None,
) -> ViewerAsk:
    """What a request asks, read from the parser's head: as ``from_request`` reads it
    (the first ``Authorization`` and ``Last-Event-ID``, every ``X-Forwarded-For`` joined,
    the last of a repeated query parameter)."""
    resume = auth = forwarded = None
    rfc7239 = False
    asked: dict[str, str] = {}
    for name, value in headers:
        if name not in READ:  # most of a browser's headers: one look, not five
            continue
        if name == b"last-event-id":
            resume = value if resume is None else resume
        elif name == b"authorization":
            auth = value if auth is None else auth
        elif name == b"x-forwarded-for":
            forwarded = value if forwarded is None else forwarded + b", " + value
        elif name == b"forwarded":
            rfc7239 = True
        elif name == RESET:
            asked[RESET_HEADER] = value.decode("latin-1")
    address = None if client is None else client[0]
    if forwarded is not None and address is not None:
        hops = forwarded.decode("latin-1")
        address = peer_address(address, hops, trusted(address, hops) if trusted else None)
    elif rfc7239 and address is not None:
        forwarded_unread(address)
    if not query and not asked:  # most viewers: no flag, no query, no reset-step header
        return ViewerAsk(
            (stream_id,),
            None if resume is None else resume.decode("latin-1"),
            None if auth is None else bearer_of(auth.decode("latin-1")),
            address,
        )
    q = dict(urllib.parse.parse_qsl(query.decode("latin-1"), True)) if query else {}
    absent = None if resume is None else ""  # as ``resume_of`` finds the header
    raw = resume.decode("latin-1") if resume else q.get("last_event_id", absent)
    return ViewerAsk(
        (stream_id,),
        raw,
        token_of(None if auth is None else auth.decode("latin-1"), q.get("token")),
        address,
        _flag(q, "presence"),
        _flag(q, "compact"),
        _flag(q, "caught_up"),
        reset_step_wanted(asked, q),
    )


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in YES


ADDRESS = "broadcaster.client_address"
"""Where a request's scope keeps its client's address, once read (``client_address``)."""


def client_address(request: Request) -> str | None:
    """The client's address: the socket's peer, or, behind a trusted proxy, the last
    hop of ``X-Forwarded-For`` that is not one (uvicorn's proxy headers middleware has
    put it in the scope: ``Settings.trusted_proxies``). Looked at once per request (a
    forwarded header not believed is counted once)."""
    scope = request.scope
    if ADDRESS in scope:
        known: str | None = scope[ADDRESS]
        return known
    client = scope.get("client")
    address = str(client[0]) if client else None
    if address is not None:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded is not None:
            _untrusted_proxy(address, forwarded)
        elif "forwarded" in request.headers:
            forwarded_unread(address)
    scope[ADDRESS] = address
    return address


def peer_address(peer: str, forwarded: str, behind: str | None) -> str:
    """``client_address`` of a request from ``peer`` with ``X-Forwarded-For: forwarded``:
    ``behind`` when the peer is a trusted proxy (its client), else the peer itself."""
    if behind:
        return behind
    _untrusted_proxy(peer, forwarded)
    return peer


def forwarded_unread(peer: str) -> None:
    """A request from ``peer`` carried ``Forwarded`` (RFC 7239) and no
    ``X-Forwarded-For``: the front-end reads only the latter, so its client is ``peer``,
    whatever ``peer`` is."""
    UNTRUSTED.seen(peer, "forwarded")


def _untrusted_proxy(address: str, forwarded: str) -> None:
    """Count a request from ``address`` with ``X-Forwarded-For: forwarded`` whose peer is
    not a trusted proxy. A trusted proxy's client is one of the header's hops (uvicorn
    put it in the scope); an untrusted peer is not."""
    if address not in (h.strip() for h in forwarded.split(",")):
        UNTRUSTED.seen(address, "x-forwarded-for")


def keep_grant(request: Request, token: str, grant: Grant) -> None:
    """What ``token`` was verified to open, kept for the rest of the request
    (``http.access.token_grant`` verifies once per request)."""
    request.state.token_grant = (token, grant)


def kept_grant(request: Request, token: str | None = None) -> Grant | None:
    """What the request's token was verified to open (``keep_grant``), if it was: of
    ``token``, when named."""
    kept: tuple[str, Grant] | None = getattr(request.state, "token_grant", None)
    if kept is None or (token is not None and kept[0] != token):
        return None
    return kept[1]
