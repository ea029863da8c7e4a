"""``viewers.decision.decide``: every check on a viewer in one order, as a table. Each row
is a viewer's ask and what the front-end knows, and the answer: admitted (with where it
resumes and who it is), refused (the status and the code), or later (why, how long).
Where two checks would refuse, the row says which comes first."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from broadcaster.auth import credentials, tokens
from broadcaster.auth.jwks import TokenVerifier
from broadcaster.core.eventlog import StreamInfo
from broadcaster.viewers.ask import ViewerAsk
from broadcaster.viewers.decision import (
    TOPIC,
    TURN,
    Admit,
    Later,
    Limits,
    ViewerState,
    decide,
    stream_refusal,
)
from broadcaster.viewers.refusals import Refusal
from broadcaster.viewers.slots import Slots

SECRET = "decision-test-secret-0123456789abcdef"
VERIFIER = TokenVerifier([SECRET], legacy=True)
NOW = time.time()


def jwt(*read: str, sub: str | None = "u1") -> str:
    return tokens.mint_token(SECRET, read=list(read), sub=sub, ttl_seconds=600, now=NOW)


def legacy(stream: str) -> str:
    return credentials.mint_legacy_token(credentials.VIEWER_PREFIX, SECRET, stream, 600)[0]


@dataclass
class Room:
    """The hub as ``decide`` reads it: its connections, each stream's viewers, and its
    admission rate's answer (seconds to wait; None: refused)."""

    connections: int = 0
    viewers: dict[str, int] = field(default_factory=dict)
    rate: float | None = 0.0
    turns: int = 0

    def viewers_of(self, stream_id: str) -> int:
        return self.viewers.get(stream_id, 0)

    def admit(self) -> float | None:
        self.turns += 1
        return self.rate


@dataclass
class Known:
    """What a row's front-end knows besides the ask."""

    verifier: TokenVerifier | None = VERIFIER
    room: Room = field(default_factory=Room)
    subjects: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    vouched: bool | None = None
    turn: bool = True


def state(known: Known, token: str | None) -> ViewerState:
    slots = Slots(per_subject=2, per_address=3)
    slots.subjects.update(known.subjects)
    slots.addresses.update(known.addresses)
    slots.open = sum(known.addresses.values())
    grant = None
    if known.verifier is not None and token and tokens.shape(token) == "jwt":
        grant = known.verifier.grant_now(token)
    limits = Limits(connections=10, viewers_per_stream=4)
    return ViewerState(known.verifier, grant, known.room, slots, limits, known.vouched, known.turn)


ASK = ViewerAsk(("s1",), "7.0a1b2c3d", jwt("s1"), "10.0.0.1")
IN = Admit(7, "0a1b2c3d", "u1")
"""``ASK`` admitted: where it resumes, and its token's subject."""
FULL = Room(connections=10)
STREAM_FULL = Room(viewers={"s1": 4})
NO_RATE = Room(rate=None)
TOO_MANY = (429, "too_many_connections")
BUSY = (503, "busy")
NO_TOKEN = (401, "unauthorized")
BAD_POINT = (400, "bad_resume_point")


def ask(**changed: Any) -> ViewerAsk:
    return ASK._replace(**changed)


ROWS: list[tuple[str, ViewerAsk, Known, Any]] = [
    # (what, the ask, what the front-end knows, the answer)
    ("admitted at its resume point", ASK, Known(), IN),
    ("from the start", ask(resume=None), Known(), Admit(0, None, "u1")),
    ("a plain seq", ask(resume="5"), Known(), Admit(5, None, "u1")),
    ("no tokens configured: anyone", ask(token=None), Known(None), IN._replace(subject=None)),
    ("a prefix entry", ask(token=jwt("s*")), Known(), IN),
    ("a token naming nobody", ask(token=jwt("s1", sub=None)), Known(), IN._replace(subject=None)),
    ("a legacy token of this stream", ask(token=legacy("s1")), Known(), IN._replace(subject=None)),
    ("no token", ask(token=None), Known(), NO_TOKEN),
    ("not a token", ask(token="garbage"), Known(), NO_TOKEN),
    ("another stream's token", ask(token=jwt("s2")), Known(), (403, "forbidden")),
    ("a legacy token of another stream", ask(token=legacy("s2")), Known(), NO_TOKEN),
    ("a malformed resume point", ask(resume="z"), Known(), BAD_POINT),
    ("the token before the resume point", ask(token=None, resume="z"), Known(), NO_TOKEN),
    ("its subject at its limit", ASK, Known(subjects={"u1": 2}), TOO_MANY),
    ("its address at its limit", ASK, Known(addresses={"10.0.0.1": 3}), TOO_MANY),
    ("the front-end at its limit", ASK, Known(room=FULL), BUSY),
    ("the stream at its viewer limit", ASK, Known(room=STREAM_FULL), BUSY),
    ("the client's limit first", ASK, Known(room=FULL, subjects={"u1": 2}), TOO_MANY),
    ("the resume point before the limits", ask(resume="z"), Known(room=FULL), BAD_POINT),
    ("past the admission rate", ASK, Known(room=NO_RATE), BUSY),
    ("its turn in a while", ASK, Known(room=Room(rate=0.25)), Later(TURN, 0.25)),
    ("its turn taken", ASK, Known(room=NO_RATE, turn=False), IN),
    ("the limits before its turn", ASK, Known(room=Room(connections=10, rate=None)), BUSY),
    ("its topic here does not vouch", ASK, Known(vouched=False), Later(TOPIC)),
    ("the limits before its topic", ASK, Known(room=FULL, vouched=False), BUSY),
    ("its topic vouches", ASK, Known(vouched=True), IN),
    ("a long-poll: no stream, no turn", ask(stream_ids=(), resume=None, token=None),
     Known(None, room=NO_RATE, turn=False), Admit(0, None, None)),
]  # fmt: skip


@pytest.mark.parametrize(("what", "ask", "known", "answer"), ROWS, ids=[r[0] for r in ROWS])
def test_decide(what: str, ask: ViewerAsk, known: Known, answer: Any) -> None:
    known.room.turns = 0
    decided = decide(ask, state(known, ask.token))
    if refused(answer):
        assert isinstance(decided, Refusal), decided
        assert (decided.status, decided.code) == answer
        if decided.status in (429, 503):
            assert 1 <= int(decided.headers["retry-after"]) <= 3, "a refusal for want of room"
        if decided.status == 401:
            assert decided.headers == {"www-authenticate": "Bearer"}
    else:
        assert decided == answer
    took = known.room.turns
    assert took == (0 if what in NO_TURN else 1), "a turn at the rate only once let in"


def refused(answer: Any) -> bool:
    """A row's answer is a refusal's (status, code) (``Admit`` and ``Later`` are tuples too)."""
    return not isinstance(answer, (Admit, Later))


NO_TURN = {what for what, _, known, answer in ROWS if refused(answer) or not known.turn}
NO_TURN -= {"past the admission rate"}
NO_TURN |= {"its topic here does not vouch"}
"""The rows whose viewer takes no turn at the admission rate: refused before it (or it
had its turn), or waiting for its topic first."""


def test_what_the_log_says_of_a_resume_point() -> None:
    info = StreamInfo("feed", 9, None, "0a1b2c3d", "0a1b2c3d")
    assert stream_refusal("s1", info, 9, "0a1b2c3d") is None
    assert stream_refusal("s1", info, 3, None) is None
    for seen, at, code in (
        (None, 1, "not_found"),
        (replace(info, kind="ds"), 1, "durable_stream"),
        (info, 10, "resume_point_ahead"),
    ):
        refused = stream_refusal("s1", seen, at, None)
        assert refused is not None and refused.code == code, code
    other = replace(info, tag_at="ffffffff")
    refused = stream_refusal("s1", other, 9, "0a1b2c3d")
    assert refused is not None and refused.code == "resume_point_unknown"
    assert refused.extra == {"last_event_id": 9}
