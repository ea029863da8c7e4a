"""Whether a viewer is let in: ``decide(ask, state)``, the one place every check on a
viewer lives, in one order, for the route and the viewers answered from the parser alike:

1. its token may read every stream it asks for (401, 403: ``read_refusal``);
2. its resume point is one this server issued (400);
3. the client holds fewer open responses here than it may (429: its token's subject,
   its address);
4. the front-end has room: its connections (503), each stream's viewers (503);
5. (from the parser) the stream's topic here vouches for the resume point, or the
   viewer waits for it (``Later``, ``TOPIC``);
6. its turn at the admission rate: now, in so many seconds (``Later``), or, past the
   wait the rate allows, refused (503).

Then it is admitted (``Admit``). What the stream's log says of the resume point (404,
409) is ``stream_refusal``'s, once admitted: a herd refused reads nothing from Redis.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from broadcaster.auth import credentials, tokens
from broadcaster.auth.jwks import TokenVerifier
from broadcaster.auth.tokens import Grant
from broadcaster.core import sse
from broadcaster.core.eventlog import StreamInfo
from broadcaster.viewers.ask import ViewerAsk
from broadcaster.viewers.refusals import Refusal, busy
from broadcaster.viewers.slots import Slots

BEARER = {"www-authenticate": "Bearer"}


class Room(Protocol):
    """What ``decide`` reads of the hub."""

    @property
    def connections(self) -> int: ...

    def viewers_of(self, stream_id: str) -> int: ...

    def admit(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """The front-end's own limits (``BROADCASTER_MAX_CONNECTIONS``,
    ``BROADCASTER_MAX_VIEWERS_PER_STREAM``)."""

    connections: int
    viewers_per_stream: int


class ViewerState(NamedTuple):
    """What the front-end knows when it decides on one viewer. ``verifier``: None when
    reading needs no token, or when the route checked access its own way first (a chat
    token, a dashboard's prefixes); ``grant``: what the viewer's JWT opens, verified.
    ``vouched``: from the parser, whether the stream's topic here vouches for the resume
    point (None: the route reads the log once admitted). ``turn``: whether the viewer
    takes a turn at the admission rate (False: it had its turn, or it is no herd)."""

    verifier: TokenVerifier | None
    grant: Grant | None
    room: Room
    slots: Slots
    limits: Limits
    vouched: bool | None = None
    turn: bool = True


class Admit(NamedTuple):
    """Let in: the seq and history tag it saw (``(0, None)``: from the start), and who it
    is (its token's subject)."""

    after: int
    tag: str | None
    subject: str | None


Wait = Literal["turn", "topic"]
TURN: Wait = "turn"
TOPIC: Wait = "topic"


class Later(NamedTuple):
    """Not yet: its turn at the admission rate comes in ``wait`` seconds (``TURN``), or
    (from the parser) its stream's topic here is to settle first (``TOPIC``)."""

    reason: Wait
    wait: float = 0.0


Decision = Admit | Refusal | Later

Point = tuple[int, str | None]
"""A resume point as ``sse.parse_resume_point`` reads it: the seq, the history tag."""


def decide(ask: ViewerAsk, state: ViewerState, point: Point | None = None) -> Decision:
    """Admit, refuse or later: every check, in the order of the module's list. ``point``:
    ``ask``'s resume point as its caller parsed it already (None: parsed here)."""
    grant = state.grant
    if state.verifier is not None:
        refused = read_refusal(state.verifier, ask.token, grant, ask.stream_ids)
        if refused is not None:
            return refused
    if point is None:
        point = sse.parse_resume_point(ask.resume)
    if point is None:
        return Refusal(400, "bad_resume_point", "Last-Event-ID is not an id this server issued")
    subject = grant.subject if grant is not None else None
    refused = room_refusal(state, ask.stream_ids, subject, ask.address)
    if refused is not None:
        return refused
    if state.vouched is False:
        return Later(TOPIC)
    if state.turn:
        wait = state.room.admit()
        if wait is None:
            return busy(
                "this front-end is admitting viewers as fast as it may; retry",
                random.randint(1, 3),  # spread the herd out
                "admission_rate",
            )
        if wait:
            return Later(TURN, wait)
    return Admit(point[0], point[1], subject)


def room_refusal(
    state: ViewerState, stream_ids: Sequence[str], subject: str | None, address: str | None
) -> Refusal | None:
    """The room rule: (429) at the client's own limits (its token's subject, its address);
    (503) at the front-end's connection limit (its open responses, and long-polls), or
    when a stream of ``stream_ids`` is at its viewer limit; None: there is room."""
    slots, room, limits = state.slots, state.room, state.limits
    refused = slots.refusal(subject, address)
    if refused is not None:
        return refused
    if max(room.connections, slots.open) >= limits.connections:
        return busy("this front-end is at its connection limit; retry", 2, "connections")
    for stream_id in stream_ids:
        if room.viewers_of(stream_id) >= limits.viewers_per_stream:
            return busy(
                "this stream is at its viewer limit on this front-end; retry", 2, "stream_viewers"
            )
    return None


def unauthorized(message: str) -> Refusal:
    return Refusal(401, "unauthorized", message, headers=BEARER)


TOKEN_ENDED = {
    "expired": ("token_expired", "the token has expired: get a new one and resume"),
    "revoked": ("token_revoked", "the token was revoked"),
}


def token_ended(reason: str) -> Refusal:
    """401 for a token that expired or was revoked (``reason``): a new token opens what
    it opened, from where the client was."""
    code, message = TOKEN_ENDED[reason]
    return Refusal(401, code, message, headers=BEARER)


def read_refusal(
    verifier: TokenVerifier | None,
    token: str | None,
    grant: Grant | None,
    streams: Sequence[str],
    prefixes: Sequence[str] = (),
) -> Refusal | None:
    """The rule of reading, once for every way a request comes (the viewers' ``decide``,
    and ``http.access.authorize_read``): None when ``token`` may read every stream of
    ``streams`` and every prefix of ``prefixes``, else the answer (401, 403). A JWT's
    ``grant`` is the caller's to verify first (it may need a key fetched)."""
    if verifier is None:
        return None
    kind = tokens.shape(token) if token else None
    if kind == "jwt" and grant is not None:
        uncovered = [s for s in streams if not grant.allows("read", s)]
        uncovered += [p + "*" for p in prefixes if not grant.allows_prefix("read", p)]
        if uncovered:
            return Refusal(403, "forbidden", f"this token may not read {uncovered[0][:80]!r}")
        return None
    if kind == "legacy" and token:
        opened = [verifier.legacy_grants(token, credentials.VIEWER_PREFIX, s) for s in streams]
        if opened and all(opened) and not prefixes:
            return None
        if any(opened):
            return Refusal(403, "forbidden", "a legacy token opens one stream and no prefix")
    return unauthorized("a valid viewer token for this stream is required (Bearer or ?token=)")


def stream_refusal(
    stream_id: str, info: StreamInfo | None, after: int, tag: str | None
) -> Refusal | None:
    """What the stream's log says of an admitted viewer's resume point: 404 for no such
    stream, 409 for a Durable Stream (read at its own route), for a point past the
    newest event, or for a point whose history is not the stream's (Redis lost writes
    and the stream was written again differently: never spliced); None: served."""
    if info is None:
        return Refusal(404, "not_found", f"no stream {stream_id!r} (unknown or expired)")
    if info.kind == "ds":
        return Refusal(
            409,
            "durable_stream",
            f"{stream_id!r} is a Durable Stream: read it at /v1/stream/{stream_id}",
        )
    if after > info.last_seq:
        return Refusal(
            409,
            "resume_point_ahead",
            f"resume point {after} is past the newest event {info.last_seq}: start over",
            last_event_id=info.last_seq,
        )
    if tag is not None and info.tag_at != tag:
        return Refusal(
            409,
            "resume_point_unknown",
            f"event {after} you saw is not in this stream's history (it was lost and "
            "rewritten): start over",
            last_event_id=info.last_seq,
        )
    return None
