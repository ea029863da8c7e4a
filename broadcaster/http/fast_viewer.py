"""A viewer of one stream opened from the parser's callback: no ASGI scope, no task.

``GET /v1/streams/{id}/events`` is what a herd of viewers sends after a deploy or a lost
front-end, and most of them ask for a stream this front-end watches, at a resume point
its topic holds (``Hub.known``). Such a request needs nothing from Redis and nothing that
waits, so the server's protocol (``wire.py``) asks ``FastViewers.open`` first, once the
request is parsed. When it can answer, it asks what the route asks, by the same
functions (the stream id; ``viewing.admission``: the viewer's token and the resume point;
``viewing.room_refusal``: the connection limits; and the admission rate);
then, now or once the viewer's turn at the admission rate comes, the viewer takes its
slot and joins its topic caught up and handed over (``sse_response.Handed``), as the SSE
response's task would have left it, with the same send path, slow-viewer cut-off,
keepalives, presence and drain, and the protocol writes the head and the first chunk. A
viewer of a stream not watched here yet, or whose topic is still settling, waits for it
and is asked about again (``Opening.until``): the stream's state is read for it with
other streams' in one round trip, and its topic made from it (``fanout.arrivals``).
Anything else (a stream the read finds unknown or ended, a resume point the topic does
not hold, a token to fetch keys for, a refusal or an error to answer, ``compact``, a
browser's cross-origin request, an AI SDK 7 reader asking for ``reset-step``) returns
None, and the request goes the usual way through the app, which answers it as before.
Nothing is taken on that path.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.types import Send

from broadcaster.auth import tokens
from broadcaster.chat.reset_step import HEADER
from broadcaster.chat.reset_step import wanted as reset_step_wanted
from broadcaster.core import names
from broadcaster.core.sse import Writer
from broadcaster.http.access import token_of
from broadcaster.http.errors import ApiError
from broadcaster.http.limits import forwarded_unread, peer_address
from broadcaster.http.sse_response import Handed, raw_headers
from broadcaster.http.viewing import SSE_HEADERS, admission, retry_field, room_refusal
from broadcaster.transport.fast import Opening
from broadcaster.transport.seam import Connection

__all__ = ["FastViewers", "Opening"]


def _later(*_: Any) -> None:
    """The ``start`` of an ``Opening`` that is asked about again instead."""


PREFIX, SUFFIX = b"/v1/streams/", b"/events"
RESET_HEADER = HEADER.encode()


class FastViewers:
    """``open`` for the app's protocol (``transport.fast.FastPath``); reads the app's
    state (made by its lifespan) on each call, so it answers nothing before start-up is
    over or after the drain."""

    prefix = PREFIX

    def __init__(self, app: Any, trusted: Callable[[str, str], str | None] | None) -> None:
        """``trusted(peer, x_forwarded_for)``: the client's address behind a trusted
        proxy (None: the peer is no trusted proxy), as uvicorn's proxy headers
        middleware puts it in the scope."""
        self.app = app
        self.trusted = trusted
        self.answered = 0
        """Viewers answered so (a count the tests and the benches read)."""
        self._shared: tuple[Any, ...] = (None,)
        self._state: dict[str, Any] = {}
        """What it reads of the app's state, read once its lifespan made the hub (each is
        made once for the app's life; a drain is the hub's ``closing``)."""
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
        state = self._state or self._started()
        hub = state.get("hub")
        if hub is None or hub.closing or state.get("cors"):
            # With CORS, the app's middleware has a say in every answer's headers (``Vary:
            # Origin`` even without an ``Origin``): the app answers them all.
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
            send: Send, writer: Writer, conn: Connection
        ) -> tuple[bytes, Callable[[], None]] | None:
            if wait and self._room(state, ask) is not True:  # things change while it waits
                return None
            return self._join(state, ask, send, writer, conn)

        return Opening(self.head, wait, start)

    def _started(self) -> dict[str, Any]:
        """The app's state, by its public attributes, once its hub is made ({}: not yet)."""
        state = self.app.state
        if getattr(state, "hub", None) is None:
            return {}
        names = ("hub", "access", "slots", "settings", "metrics", "cors")
        self._state = {name: getattr(state, name, None) for name in names}
        return self._state

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
        asked: dict[str, str] = {}
        for name, value in headers:
            if name == b"last-event-id":
                resume = value if resume is None else resume
            elif name == b"authorization":
                auth = value if auth is None else auth  # the first, as the app reads it
            elif name == b"x-forwarded-for":
                forwarded = value if forwarded is None else forwarded + b", " + value
            elif name == b"forwarded":
                rfc7239 = True
            elif name == RESET_HEADER:
                asked[HEADER] = value.decode("latin-1")
        params = dict(urllib.parse.parse_qsl(query.decode("latin-1"), True)) if query else {}
        if any(params.get(k, "").lower() in ("1", "true") for k in ("compact", "caught_up")):
            return None  # a compact replay is the log's to fold; marks are the app's to send
        if reset_step_wanted(asked, params):
            return None  # the AI SDK 7's view is the route's (``chat.reset_step``)
        raw = params.get("last_event_id") if resume is None else resume.decode("latin-1")
        verifier = state["access"].verifier
        token = grant = None
        if verifier is not None:
            token = token_of(None if auth is None else auth.decode("latin-1"), params.get("token"))
            if token and tokens.shape(token) == "jwt":
                grant = verifier.grant_now(token)
                if grant is None:
                    return None  # a key to fetch, or a refusal: the app's to answer
        try:  # the route's own decision (``viewing.admission``); a refusal is the app's
            admitted = admission(verifier, stream_id, token, grant, raw)
        except ApiError:
            return None
        if admitted.tag is None and admitted.after != 0:
            return None  # a resume point without a history tag is the log's to judge
        address = None if client is None else client[0]
        if forwarded is not None and address is not None:
            hops = forwarded.decode("latin-1")
            behind = self.trusted(address, hops) if self.trusted else None
            address = peer_address(address, hops, behind)
        elif rfc7239 and address is not None:
            forwarded_unread(address)  # not read: counted (proxies.UNTRUSTED)
        wants = params.get("presence", "").lower() in ("1", "true")
        return Ask(stream_id, admitted.after, admitted.tag, admitted.subject, address, wants)

    @staticmethod
    def _room(state: dict[str, Any], ask: Ask) -> bool | None:
        """Whether ``room_refusal`` and ``_stream_state`` would let it through now: True;
        False, refused (by a limit, or a drain); None, its resume point is not one the
        stream's topic here vouches for (there may be no topic yet)."""
        hub, slots, settings = state["hub"], state["slots"], state["settings"]
        if hub.closing or room_refusal(
            hub, slots, settings, (ask.stream_id,), subject=ask.subject, address=ask.address
        ):
            return False
        return True if hub.known(ask.stream_id, ask.after, ask.tag) is not None else None

    def _join(
        self, state: dict[str, Any], ask: Ask, send: Send, writer: Writer, conn: Connection
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
        handed.hold(conn)
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
