"""A viewer's response opened by the app: ``Viewing``, what a front-end serves its viewers
with (made once with the app; its hub and log once the lifespan made them), and the way
in every SSE route takes: its ask decided (``decision.decide``), its turn waited for, its
slot taken, the stream's state read (``decision.stream_refusal``), its response made
(``response.SSEResponse``). Each route checks access its own way first, but the SSE
route, whose token ``decide`` checks (``verifier``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broadcaster.auth import tokens
from broadcaster.auth.jwks import TokenVerifier
from broadcaster.auth.tokens import Grant
from broadcaster.chat.reset_step import VIEW as RESET_VIEW
from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.core.sse import Writer
from broadcaster.fanout.hub import Hub
from broadcaster.viewers.ask import ViewerAsk, kept_grant
from broadcaster.viewers.decision import (
    Admit,
    Later,
    Limits,
    ViewerState,
    decide,
    room_refusal,
    stream_refusal,
)
from broadcaster.viewers.expiry import Expiries, Expiry, Held, Revoked
from broadcaster.viewers.headers import UI_MESSAGES
from broadcaster.viewers.refusals import Refusal
from broadcaster.viewers.response import SSEResponse
from broadcaster.viewers.slots import Slot, Slots

RETRY_FIELDS = 10_000
"""Most ``retry:`` fields a ``Viewing`` keeps made (the default jitter has 1,001 values;
a wider one is formatted anew past these)."""

Frame = Callable[[str], bytes]
"""What a response says when its token ends, for a reason (``expiry.Held.frame``)."""


@dataclass(frozen=True, slots=True)
class ViewerSettings:
    """The settings a viewer's response follows, read once at the entry point."""

    retry_ms: int
    """``retry:`` of every response (``BROADCASTER_RETRY_MS``)..."""
    retry_jitter_ms: int
    """... plus a random share of this (``BROADCASTER_RETRY_JITTER_MS``)."""
    send_timeout: float
    """A viewer whose socket takes nothing this long is cut off
    (``BROADCASTER_SLOW_VIEWER_TIMEOUT``)."""
    keepalive: float
    """Seconds between keepalives of a silent response (``BROADCASTER_KEEPALIVE_SECONDS``)."""
    limits: Limits
    leeway: float = 0.0
    """Seconds a token is still taken after its ``exp`` (``BROADCASTER_TOKEN_LEEWAY_SECONDS``):
    its responses end then."""


class Viewing:
    """What this front-end serves viewers with (``app.state.viewing``): its settings, the
    open responses per client (``slots``), the verifier of tokens (None: reading needs
    none), the counters it bumps, and once the lifespan made them, the hub and the log
    (None before, and the fast path answers nothing)."""

    def __init__(
        self,
        settings: ViewerSettings,
        slots: Slots,
        verifier: TokenVerifier | None,
        *,
        cut_off: Callable[[], None],
        resumed: Callable[[], None],
        cors: bool = False,
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.verifier = verifier
        self.cut_off = cut_off
        """Counts a slow viewer cut off."""
        self.resumed = resumed
        """Counts a resume served from the hub's memory."""
        self.cors = cors
        """CORS is configured: the app's middleware has a say in every answer."""
        self.hub: Hub | None = None
        self.log: EventLog | None = None
        self.expiries = Expiries()
        """The open responses that end with their token."""
        self.revoked: Revoked | None = None
        """Whether a token is revoked now (``auth.revocations``), once known."""
        self._states: dict[tuple[bool | None, bool], ViewerState] = {}
        """``state`` without a grant, with this front-end's verifier, made once the hub
        is there: every viewer without a JWT is decided on with one of these six."""
        self._retry_fields: dict[int, bytes] = {}
        """``retry_field``'s bytes, made once per value: a herd's viewers draw from the
        same few hundred or thousand values (``RETRY_FIELDS`` of them at most)."""

    def started(self, hub: Hub, log: EventLog, revoked: Revoked) -> None:
        self.hub, self.log, self.revoked = hub, log, revoked
        limits, verifier = self.settings.limits, self.verifier
        self._states = {
            (vouched, turn): ViewerState(verifier, None, hub, self.slots, limits, vouched, turn)
            for vouched in (None, True, False)
            for turn in (True, False)
        }

    def grant_revoked(self, grant: Grant) -> bool:
        revoked = self.revoked
        return revoked is not None and revoked(grant.jti, grant.subject, grant.issued)

    def held(
        self,
        grant: Grant | None,
        token: str | None,
        frame: Callable[[str], bytes] = sse.token_ended,
    ) -> Held | None:
        """The token a response holds, which ends it (``expiry``): a verified JWT's
        ``grant``, or ``token`` if a legacy token; None when the response was opened
        with no token (reading needs none, or an API key opened it)."""
        if self.verifier is None:
            return None
        legacy = token if grant is None and token and tokens.shape(token) == "legacy" else None
        entry = Expiry.of(grant, legacy, self.settings.leeway)
        return None if entry is None else Held(entry, self.expiries, frame)

    def state(
        self,
        grant: Grant | None,
        *,
        verifier: TokenVerifier | None,
        vouched: bool | None = None,
        turn: bool = True,
    ) -> ViewerState:
        if grant is None and verifier is self.verifier:
            made = self._states.get((vouched, turn))
            if made is not None:
                return made
        assert self.hub is not None
        limits = self.settings.limits
        return ViewerState(verifier, grant, self.hub, self.slots, limits, vouched, turn)

    def retry_field(self) -> bytes:
        """The ``retry:`` of one response, jittered (``BROADCASTER_RETRY_JITTER_MS``)."""
        settings = self.settings
        jitter = int(random.random() * (settings.retry_jitter_ms + 1))  # randint's, cheaper
        field = self._retry_fields.get(jitter)
        if field is None:
            field = sse.retry(settings.retry_ms + jitter)
            if len(self._retry_fields) < RETRY_FIELDS:
                self._retry_fields[jitter] = field
        return field


def viewing_of(request: Request) -> Viewing:
    viewing: Viewing = request.app.state.viewing
    return viewing


async def admit(
    request: Request, ask: ViewerAsk, *, verifier: TokenVerifier | None = None, turn: bool = True
) -> tuple[Slot, Admit]:
    """``ask`` decided, with its turn at the admission rate waited for (the room checked
    again after: things change while it waits), and its slot, held until its response
    ends; or the ``Refusal``, raised. ``verifier``: the SSE route's token check (None: the
    route checked access its own way)."""
    viewing = viewing_of(request)
    state = viewing.state(kept_grant(request), verifier=verifier, turn=turn)
    decided = decide(ask, state)
    if isinstance(decided, Later):
        await asyncio.sleep(decided.wait)
        decided = decide(ask, state._replace(turn=False))
    if isinstance(decided, Refusal):
        raise decided
    assert isinstance(decided, Admit)
    return viewing.slots.take(decided.subject, ask.address), decided


async def admit_viewer(request: Request, ask: ViewerAsk) -> Slot:
    """Room for one more SSE response reading ``ask``'s streams (a dashboard's, a chat's
    stream, a Durable Stream's live reader), held until it ends: access and the resume
    point (of its own grammar) are the route's to check."""
    slot, _ = await admit(request, ask._replace(resume=None))
    return slot


async def admit_long_poll(request: Request, ask: ViewerAsk) -> Slot:
    """Room for one more Durable Streams long-poll, held until it answers: the
    front-end's connection limit and the client's, not the admission rate (a long-poll
    comes back after every answer: it is one reader, not a herd)."""
    unread = ask._replace(stream_ids=(), resume=None)
    slot, _ = await admit(request, unread, turn=False)
    return slot


def check_room(request: Request, ask: ViewerAsk) -> None:
    """The room rule for a response about to be started (a chat's submit, before it
    starts anything): ``Refusal`` past a limit."""
    viewing = viewing_of(request)
    state = viewing.state(kept_grant(request), verifier=None)
    grant = state.grant
    refused = room_refusal(state, (), grant.subject if grant else None, ask.address)
    if refused is not None:
        raise refused


Filter = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


async def stream_response(
    request: Request,
    ask: ViewerAsk,
    headers: dict[str, str] | None = None,
    *,
    verifier: TokenVerifier | None = None,
    body_filter: Filter | None = None,
    direct_writer: Callable[[Writer], Writer] | None = None,
    ending: Frame = sse.token_ended,
) -> Response:
    """The SSE response of ``ask``'s stream after its resume point, 204 when the client
    has seen the end, or the ``Refusal``. ``body_filter`` (the chat and AG-UI routes')
    sees every chunk of the body: the response is never handed over
    (``SSEResponse.detach``) and takes direct writes only through ``direct_writer`` (the
    writer it makes of the socket's). A reader that asked for ``reset-step`` gets it
    (``_reset_view``). It ends with its token, saying ``ending(reason)``."""
    if ask.reset_step:
        body_filter, direct_writer = _reset_view(body_filter, direct_writer)
    viewing = viewing_of(request)
    hub = viewing.hub
    assert hub is not None
    stream_id = ask.stream_ids[0]
    slot, admitted, info = await _admitted(request, viewing, ask, verifier)
    if info.ended and admitted.after == info.last_seq:
        slot.release()
        return Response(status_code=204)

    def body(writer: Writer | None) -> AsyncIterator[bytes]:
        chunks = hub.follow(
            stream_id,
            admitted.after,
            info,
            _filtered_writer(writer, direct_writer) if body_filter else writer,
            subject=admitted.subject,
            wants_presence=ask.presence,
            compact=ask.compact,
            detach=None if body_filter else response.detach,
            marks=ask.caught_up,  # docs/resuming.md
        )
        return body_filter(chunks) if body_filter else chunks

    response = SSEResponse(
        body,
        first=viewing.retry_field(),
        headers=UI_MESSAGES | (headers or {}),
        send_timeout=viewing.settings.send_timeout,
        stream_id=stream_id,
        on_cut_off=viewing.cut_off,
        on_end=slot.release,
        resume=None if body_filter else hub.resume,
        leave=hub.leave,
        token=viewing.held(kept_grant(request), ask.token, ending),
    )
    return response


async def _admitted(
    request: Request, viewing: Viewing, ask: ViewerAsk, verifier: TokenVerifier | None
) -> tuple[Slot, Admit, StreamInfo]:
    """The viewer's slot and decision (``admit``) and the stream's state at its resume
    point, or the refusal; a viewer refused lets those waiting for its topic go on."""
    stream_id, hub = ask.stream_ids[0], viewing.hub
    assert hub is not None
    try:
        slot, admitted = await admit(request, ask, verifier=verifier)
        with slot.guard():
            info = await _stream_state(viewing, hub, stream_id, admitted)
            refused = stream_refusal(stream_id, info, admitted.after, admitted.tag)
            if refused is not None:
                raise refused
    except Refusal:
        hub.arrivals.release(stream_id)  # no topic comes of this viewer: those waiting go on
        raise
    assert info is not None
    return slot, admitted, info


async def _stream_state(
    viewing: Viewing, hub: Hub, stream_id: str, admitted: Admit
) -> StreamInfo | None:
    """The stream's state as of the resume point (None: no such stream). A reconnect to a
    front-end that watches the stream and holds the resume point, or a viewer from the
    start of a stream whose whole history its topic holds (``Hub.known``), reads
    nothing from Redis."""
    after, tag = admitted.after, admitted.tag
    info = hub.known(stream_id, after, tag) if tag is not None or after == 0 else None
    if info is not None:
        if tag is not None:  # a resume (Last-Event-ID), not a start
            viewing.resumed()
        return info
    assert viewing.log is not None
    hub.arrivals.opening(stream_id)  # a herd behind this viewer waits for its topic
    try:
        info = await viewing.log.info(stream_id, at=after if tag else None)
    finally:
        if info is None or info.kind == "ds" or info.ended or hub.closing:
            hub.arrivals.release(stream_id)  # no topic comes of it: they go on
    return info


def _reset_view(
    body_filter: Filter | None, direct_writer: Callable[[Writer], Writer] | None
) -> tuple[Filter, Callable[[Writer], Writer] | None]:
    """``body_filter`` and ``direct_writer`` of a reader that asked for the AI SDK 7's
    ``reset-step``: a restarted step's ``start-step`` served as one, through the view every
    such reader here shares (``RESET_VIEW``, after the route's own filter); direct writes
    are mapped by it unless the route's filter must see every chunk."""
    if body_filter is None:
        return RESET_VIEW.frames, RESET_VIEW.writer
    inner = body_filter
    return (lambda chunks: RESET_VIEW.frames(inner(chunks))), direct_writer


def _filtered_writer(
    writer: Writer | None, direct_writer: Callable[[Writer], Writer] | None
) -> Writer | None:
    """The fan-out's direct writer of a response with a ``body_filter``: what
    ``direct_writer`` (the AG-UI routes', a ``reset-step`` reader's) makes of the socket's
    ``writer``, which maps each write and refuses (False) one it cannot map, so that the
    run goes to the viewer's task, through the filter; none without it."""
    if writer is None or direct_writer is None:
        return None
    return direct_writer(writer)


async def viewers_response(request: Request, stream_id: str) -> JSONResponse:
    """How many viewers ``stream_id`` has on every front-end, and their subjects."""
    presence = request.app.state.presence.store
    (found,) = await presence.viewers([stream_id])
    return JSONResponse({"viewers": found.count, "subjects": found.subjects})
