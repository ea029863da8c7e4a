"""A viewer of one stream opened from the parser's callback: no ASGI scope, no task.

After a deploy or a lost front-end a herd of viewers asks for streams this front-end
watches, at resume points their topics hold (``Hub.known``): nothing from Redis, nothing
that waits. So the transport asks ``FastViewers.open`` first; it reads the request
(``ask.from_head``) and decides on it as the route does (``decision.decide``), and the
viewer joins its topic caught up and handed over (``response.Handed``), served as the
route's would be. A stream not watched yet waits for its topic (``Opening.until``);
anything else returns None and goes through the app as before, nothing taken.
ARCHITECTURE.md, "The viewer's path".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import Send

from broadcaster.auth import tokens
from broadcaster.auth.tokens import Grant
from broadcaster.core import names, sse
from broadcaster.core.sse import Writer
from broadcaster.fanout.hub import Hub
from broadcaster.transport.fast import Opening
from broadcaster.transport.seam import Connection
from broadcaster.viewers.ask import Trusted, ViewerAsk, from_head
from broadcaster.viewers.decision import TOPIC, Admit, Decision, Later, Point, decide
from broadcaster.viewers.expiry import Held
from broadcaster.viewers.headers import UI_MESSAGES
from broadcaster.viewers.opening import Viewing
from broadcaster.viewers.response import Handed, raw_headers

__all__ = ["FastViewers", "Opening"]


def _later(*_: Any) -> None:
    """The ``start`` of an ``Opening`` that is asked about again instead."""


PREFIX, SUFFIX = b"/v1/streams/", b"/events"


class FastViewers:
    """``open`` for the app's protocol (``transport.fast.FastPath``); reads the app's
    ``Viewing`` (its hub made by its lifespan) on each call, so it answers nothing before
    start-up is over or after the drain."""

    prefix = PREFIX

    def __init__(self, app: Any, trusted: Trusted | None) -> None:
        """``trusted``: how uvicorn's proxy headers middleware finds the client's address
        behind a trusted proxy (``ask.Trusted``)."""
        self.app = app
        self.trusted = trusted
        self.answered = 0
        """Viewers answered so (a count the tests and the benches read)."""
        self._shared: tuple[Any, ...] = (None,)
        self._viewing: Viewing | None = None
        self._named: tuple[bytes, str] = (b"", "")
        """The last path that named a stream, and the stream (read and checked once)."""
        self._parsed: tuple[str | None, Point | None] = (None, sse.parse_resume_point(None))
        """The last resume point sent, as sent and parsed (``_point_of``)."""
        lines = raw_headers(tuple(UI_MESSAGES.items()))
        self.head = b"".join(b"%s: %s\r\n" % pair for pair in lines)
        """The SSE response's headers, as the route's response sends them."""

    def open(
        self,
        path: bytes,
        query: bytes | None,
        headers: Sequence[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        *,
        settle: bool = True,
    ) -> Opening | None:
        """How to answer the request without the app, or None: the usual way. With
        ``settle``, a viewer of a stream not watched here yet, or whose topic is settling,
        may wait for it (``Opening.until``), then ask again without."""
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        viewing = self._viewing
        if viewing is None:  # made with the app: read once it is there
            viewing = self._viewing = getattr(self.app.state, "viewing", None)
            if viewing is None:
                return None
        hub = viewing.hub
        if hub is None or hub.closing or viewing.cors:
            # With CORS, the app's middleware has a say in every answer's headers (``Vary:
            # Origin`` even without an ``Origin``): the app answers them all.
            return None
        stream_id = self._stream_of(path)
        if stream_id is None:
            return None
        ask = from_head(stream_id, query, headers, client, self.trusted)
        if ask.compact or ask.caught_up or ask.reset_step:
            # A compact replay is the log's to fold; marks, and the AI SDK 7's view
            # (``chat.reset_step``), are the route's to send.
            return None
        decided, grant = self._decide(viewing, hub, ask, turn=True)
        if isinstance(decided, Later):
            if decided.reason == TOPIC:
                if not settle:
                    return None
                # Only its stream's topic is missing: wait for it (``Hub.when_settled``).
                until = functools.partial(hub.when_settled, stream_id)
                return Opening(self.head, 0.0, _later, until)
            wait = decided.wait
        elif isinstance(decided, Admit):
            wait = 0.0
        else:
            return None  # a refusal (or a question) the app answers

        start = functools.partial(self._start, viewing, hub, ask, decided, grant)
        return Opening(self.head, wait, start)

    def _start(  # noqa: PLR0917
        self,
        viewing: Viewing,
        hub: Hub,
        ask: ViewerAsk,
        decided: Admit | Later,
        grant: Grant | None,
        send: Send,
        writer: Writer,
        conn: Connection,
    ) -> tuple[bytes, Callable[[], None]] | None:
        """``Opening.start`` of ``ask``, ``decided`` on by ``open`` (a ``functools.partial``
        of this: one object a viewer, not a function and a cell for each name it reads).
        A viewer that waited for its turn (``Later``) is decided on again: things change
        while it waits."""
        admitted: Decision | None = decided
        waited = isinstance(decided, Later)
        if waited:
            admitted, _ = self._decide(viewing, hub, ask, turn=False)
        if not isinstance(admitted, Admit):
            return None
        token = viewing.held(grant, ask.token)
        answer = (send, writer, conn)
        return self._join(viewing, hub, ask, admitted, answer, token=token, vouched=not waited)

    def _stream_of(self, path: bytes) -> str | None:
        """The stream ``path`` names (None: no stream id), read and checked once for a
        herd's viewers, which ask for one stream one after another."""
        named = self._named
        if path == named[0]:
            return named[1]
        stream_id = path[len(PREFIX) : -len(SUFFIX)].decode("latin-1")
        if not names.is_stream_id(stream_id):
            return None
        self._named = (path, stream_id)
        return stream_id

    def _point_of(self, resume: str | None) -> Point | None:
        """``sse.parse_resume_point(resume)``, parsed once for the viewers that send it
        in a row: a herd caught up resumes from its stream's newest event."""
        parsed = self._parsed
        if resume != parsed[0]:
            parsed = self._parsed = (resume, sse.parse_resume_point(resume))
        return parsed[1]

    def _decide(
        self, viewing: Viewing, hub: Hub, ask: ViewerAsk, *, turn: bool
    ) -> tuple[Decision | None, Grant | None]:
        """``decide`` on ``ask`` as the route would, with what this path knows: a JWT
        verified now (None: a key to fetch, or a refusal, an expired or a revoked token
        among them: the app's to say), whether the topic here vouches for the resume
        point (a point without a history tag is the log's to judge: the app's); and the
        JWT's grant."""
        if hub.closing:
            return None, None
        verifier, grant = viewing.verifier, None
        if verifier is not None and ask.token and tokens.shape(ask.token) == "jwt":
            grant = verifier.grant_now(ask.token)
            if grant is None or viewing.grant_revoked(grant):
                return None, None
        point = self._point_of(ask.resume)
        if point is None or (point[1] is None and point[0] != 0):
            return None, None
        vouched = hub.vouches(ask.stream_ids[0], point[0], point[1])
        state = viewing.state(grant, verifier=verifier, vouched=vouched, turn=turn)
        return decide(ask, state, point), grant

    def _join(
        self,
        viewing: Viewing,
        hub: Hub,
        ask: ViewerAsk,
        admitted: Admit,
        answer: tuple[Send, Writer, Connection],
        *,
        token: Held | None,
        vouched: bool,
    ) -> tuple[bytes, Callable[[], None]] | None:
        """The viewer joins its topic caught up, handed over (``response.Handed``), and
        ends with its ``token``; ``vouched``: it starts at once (no wait), so nothing ran
        since ``_decide`` saw its topic vouch for the resume point (``Hub.join``)."""
        send, writer, conn = answer
        stream_id = ask.stream_ids[0]
        joined = hub.join(
            stream_id,
            admitted.after,
            admitted.tag,
            writer,
            subject=admitted.subject,
            wants_presence=ask.presence,
            vouched=vouched,
        )
        if joined is None:
            return None
        sub, held = joined
        shared = self._shared
        if shared[0] is not hub:  # the same two methods for every viewer, not two each
            shared = self._shared = (hub, hub.resume, hub.leave)
        topic = sub.topic
        handed = Handed(
            sub,
            send,
            writer,
            shared[1],
            shared[2],
            viewing.settings.send_timeout,
            stream_id if topic is None else topic.stream_id,  # one string per stream
            viewing.cut_off,
            viewing.slots.take(admitted.subject, ask.address),
            token,
        )
        handed.hold(conn)
        if token is not None:
            token.expiries.watch(token.entry, handed)
        if admitted.tag is not None:
            viewing.resumed()
        self.answered += 1
        return viewing.retry_field() + held, handed
