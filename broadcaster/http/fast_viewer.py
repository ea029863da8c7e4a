"""A viewer of one stream opened from the parser's callback: no ASGI scope, no task.

``GET /v1/streams/{id}/events`` is what a herd of viewers sends after a deploy or a lost
front-end, and most of them ask for a stream this front-end watches, at a resume point
its topic holds (``Hub.known``). Such a request needs nothing from Redis and nothing that
waits, so the server's protocol (``wire.py``) asks ``FastViewers.open`` first, once the
request's head is parsed. When it can answer, it does the route's checks (the stream id,
the viewer's token, the resume point, the connection limits and the admission rate);
then, now or once the viewer's turn at the admission rate comes, the viewer takes its
slot and joins its topic caught up and handed over (``sse_response.Handed``), as the SSE
response's task would have left it, with the same send path, slow-viewer cut-off,
keepalives, presence and drain, and the protocol writes the head and the first chunk. A
viewer of a stream not watched here yet, or whose topic is still settling, waits for it
and is asked about again (``Opening.until``): the stream's state is read for it with
other streams' in one round trip, and its topic made from it (``fanout.arrivals``).
Anything else (a stream the read finds unknown or ended, a resume point the topic does
not hold, a token to fetch keys for, a refusal or an error to answer, ``compact``, a
browser's cross-origin request) returns None, and the request goes the usual way through
the app, which answers it as before. Nothing is taken on that path.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.types import Send

from broadcaster.auth import credentials, tokens
from broadcaster.core import names, sse
from broadcaster.fanout.subscription import Writer
from broadcaster.http.limits import Refused, forwarded_unread, peer_address
from broadcaster.http.sse_response import Ends, Handed, raw_headers
from broadcaster.http.viewing import SSE_HEADERS, retry_field

Start = Callable[[Send, Writer, Ends], tuple[bytes, Callable[[], None]] | None]


class Opening(NamedTuple):
    """A viewer to answer without the app: the SSE response's header lines, and, once
    ``wait`` seconds are over (its turn at the admission rate: 0, now), ``start``; or,
    with ``until``, the request is to be asked about again once its stream's topic has
    settled (``until(then)`` calls ``then`` then, or returns False: not settling)."""

    head: bytes
    wait: float
    start: Start
    """Called by the protocol once it made the response's cycle, with the cycle's
    ``send``, the connection's direct writer and its ``Ends``: the viewer takes its slot
    and joins, and its first chunk (``retry:`` and what the topic holds) comes back with
    the function to call when the client goes. None after a wait when the request may no
    longer be answered so (an ended stream, a limit reached, a drain): the app answers it
    then, from the start."""
    until: Callable[[Callable[[], None]], bool] | None = None


def _later(*_: Any) -> None:
    """The ``start`` of an ``Opening`` that is asked about again instead."""


PREFIX, SUFFIX = b"/v1/streams/", b"/events"


class FastViewers:
    """``open`` for the app's protocol; reads the app's state (made by its lifespan) on
    each call, so it answers nothing before start-up is over or after the drain."""

    def __init__(self, app: Any, trusted: Callable[[str, str], str | None] | None) -> None:
        """``trusted(peer, x_forwarded_for)``: the client's address behind a trusted
        proxy (None: the peer is no trusted proxy), as uvicorn's proxy headers
        middleware puts it in the scope."""
        self.app = app
        self.trusted = trusted
        self.answered = 0
        """Viewers answered so (a count the tests and the benches read)."""
        self._shared: tuple[Any, ...] = (None,)
        lines = raw_headers(tuple(SSE_HEADERS.items()))
        self.head = b"".join(b"%s: %s\r\n" % pair for pair in lines)
        """The SSE response's headers, as the route's response sends them."""

    def open(
        self,
        path: bytes,
        query: bytes | None,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        *,
        settle: bool = True,
    ) -> Opening | None:
        """How to answer the request without the app, or None: the usual way. With
        ``settle``, a viewer of a stream not watched here yet, or whose topic is settling,
        may wait for it (``Opening.until``), then ask again without."""
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        state = self.app.state._state  # the app's state's own dict: no ``__getattr__``
        hub = state.get("hub")
        if hub is None or hub.closing:
            return None
        ask = self._ask(state, path[len(PREFIX) : -len(SUFFIX)], query, headers, client)
        if ask is None:
            return None
        room = self._room(state, ask)
        if room is not True:
            if not settle or room is False:  # a refusal, or asked again: the app's
                return None
            # Only its stream's topic is missing: wait for it (``Hub.when_settled``).
            return Opening(
                self.head, 0.0, _later, functools.partial(hub.when_settled, ask.stream_id)
            )
        wait = hub.admit()
        if wait is None:
            return None

        def start(
            send: Send, writer: Writer, ends: Ends
        ) -> tuple[bytes, Callable[[], None]] | None:
            if wait and self._room(state, ask) is not True:  # things change while it waits
                return None
            return self._join(state, ask, send, writer, ends)

        return Opening(self.head, wait, start)

    def _ask(
        self,
        state: dict[str, Any],
        raw_id: bytes,
        query: bytes | None,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
    ) -> Ask | None:
        """What the request asks, as the route would read it, and may be answered now;
        None when it may not be (or is to be refused: the app says how)."""
        stream_id = raw_id.decode("latin-1")
        if not names.is_stream_id(stream_id):
            return None
        resume = auth = forwarded = None
        rfc7239 = False
        for name, value in headers:
            if name == b"last-event-id":
                resume = value if resume is None else resume
            elif name == b"authorization":
                auth = auth or value
            elif name == b"x-forwarded-for":
                forwarded = value if forwarded is None else forwarded + b", " + value
            elif name == b"forwarded":
                rfc7239 = True
            elif name == b"origin" and state.get("cors"):
                return None  # CORS headers: the app's middleware adds them
        params = dict(urllib.parse.parse_qsl(query.decode("latin-1"), True)) if query else {}
        if params.get("compact", "").lower() in ("1", "true"):
            return None  # a compact replay is the log's to fold
        raw = params.get("last_event_id") if resume is None else resume.decode("latin-1")
        point = sse.parse_resume_point(raw)
        verifier = state["access"].verifier
        opened, subject = _authorized(verifier, auth, params.get("token"), stream_id)
        if point is None or not opened or (point[1] is None and point[0] != 0):
            return None  # a resume point without a history tag is the log's to judge
        address = None if client is None else client[0]
        if forwarded is not None and address is not None:
            hops = forwarded.decode("latin-1")
            behind = self.trusted(address, hops) if self.trusted else None
            address = peer_address(address, hops, behind)
        elif rfc7239 and address is not None:
            forwarded_unread(address)  # not read: counted (proxies.UNTRUSTED)
        wants = params.get("presence", "").lower() in ("1", "true")
        return Ask(stream_id, point[0], point[1], subject, address, wants)

    @staticmethod
    def _room(state: dict[str, Any], ask: Ask) -> bool | None:
        """Whether ``check_room`` and ``_stream_state`` would let it through now: True;
        False, refused (by a limit, or a drain); None, its resume point is not one the
        stream's topic here vouches for (there may be no topic yet)."""
        hub, slots, settings = state["hub"], state["slots"], state["settings"]
        if (
            hub.closing
            or max(hub.connections, slots.open) >= settings.max_connections
            or hub.viewers_of(ask.stream_id) >= settings.max_viewers_per_stream
        ):
            return False
        try:
            slots.check(ask.subject, ask.address)
        except Refused:
            return False
        return True if hub.known(ask.stream_id, ask.after, ask.tag) is not None else None

    def _join(
        self, state: dict[str, Any], ask: Ask, send: Send, writer: Writer, ends: Ends
    ) -> tuple[bytes, Callable[[], None]] | None:
        """The viewer joins its topic caught up, handed over (``sse_response.Handed``)."""
        hub, settings, metrics = state["hub"], state["settings"], state["metrics"]
        joined = hub.join(
            ask.stream_id,
            ask.after,
            ask.tag,
            writer,
            subject=ask.subject,
            wants_presence=ask.presence,
        )
        if joined is None:
            return None
        sub, held = joined
        shared = self._shared
        if shared[0] is not hub:  # the same three methods for every viewer, not three each
            shared = self._shared = (hub, hub.resume, hub.leave, metrics.cut_off.inc)
        handed = Handed(
            sub,
            send,
            writer,
            shared[1],
            shared[2],
            settings.slow_viewer_timeout,
            ask.stream_id,
            shared[3],
            state["slots"].take(ask.subject, ask.address).release,
        )
        handed.hold(ends)
        if ask.tag is not None:
            metrics.resumed_from_memory.inc()
        self.answered += 1
        return retry_field(settings) + held, handed.lost


class Ask(NamedTuple):
    """What a viewer's request asks: its stream, its resume point (the seq and history
    tag it saw, as ``sse.parse_resume_point`` reads them), who it is (its token's
    subject, its address) and whether it wants the viewer count."""

    stream_id: str
    after: int
    tag: str | None
    subject: str | None
    address: str | None
    presence: bool


def _authorized(
    verifier: Any, auth: bytes | None, query_token: str | None, stream_id: str
) -> tuple[bool, str | None]:
    """Whether the request may read ``stream_id`` as ``authorize_read`` would let it,
    decided now, and the viewer's subject; False also when it cannot be decided now (a
    JWKS key to fetch) or is refused (the usual way answers 401 or 403)."""
    if verifier is None:
        return True, None
    token = None
    if auth is not None:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    token = token or query_token or None
    if not token:
        return False, None
    kind = tokens.shape(token)
    if kind == "legacy":
        return verifier.legacy_grants(token, credentials.VIEWER_PREFIX, stream_id), None
    if kind != "jwt":
        return False, None
    grant = verifier.grant_now(token)
    if grant is None or not grant.allows("read", stream_id):
        return False, None
    return True, grant.subject
