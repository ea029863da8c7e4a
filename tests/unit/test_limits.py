"""The limits' pure parts (``viewers/slots.py``, ``viewers/refusals.py``,
``dashboard/cursor.py``'s resume points): slots per subject and per address, given back
once and only once; what looks like a browser's EventSource, and the retry it is told; a
viewer's jittered retry (its bytes made once per value); a resume point's positions cut
to the streams a request covers and to the most a connection follows; and an SSE
response that gives its slot back however it ends."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.requests import Request

from broadcaster.auth.tokens import Grant
from broadcaster.core import sse
from broadcaster.core.sse import Writer
from broadcaster.dashboard.cursor import BadResumePoint, Bases, parse
from broadcaster.viewers import opening
from broadcaster.viewers.decision import Limits, ViewerState
from broadcaster.viewers.opening import ViewerSettings, Viewing
from broadcaster.viewers.refusals import Refusal, answer, busy, is_eventsource, retry_body
from broadcaster.viewers.response import SSEResponse
from broadcaster.viewers.slots import Slots
from tests.support.procs import parse_sse


def test_slots_per_subject_and_per_address_come_back_once() -> None:
    slots = Slots(per_subject=2, per_address=3)
    a = slots.take("alice", "10.0.0.1")
    b = slots.take("alice", "10.0.0.1")
    with pytest.raises(Refusal) as refused:
        slots.take("alice", "10.0.0.2")
    assert (refused.value.status, refused.value.code) == (429, "too_many_connections")
    assert "subject" in refused.value.message
    c = slots.take(None, "10.0.0.1")  # a token naming nobody counts only by its address
    with pytest.raises(Refusal, match="address"):
        slots.take("bob", "10.0.0.1")
    assert slots.open == 3
    a.release()
    a.release()  # again: nothing more given back
    assert (slots.open, slots.subjects["alice"], slots.addresses["10.0.0.1"]) == (2, 1, 2)
    d = slots.take("alice", "10.0.0.3")
    for slot in (b, c, d):
        slot.release()
    assert (slots.open, dict(slots.subjects), dict(slots.addresses)) == (0, {}, {})


def test_no_limit_is_zero_and_a_guard_gives_the_slot_back_on_failure() -> None:
    slots = Slots(per_subject=0, per_address=0)
    held = [slots.take("alice", "10.0.0.1") for _ in range(500)]
    assert slots.open == 500
    for slot in held:
        slot.release()
    slot = slots.take("alice", None)
    with pytest.raises(KeyError), slot.guard():
        raise KeyError("the response will not be")
    assert slots.open == 0
    kept = slots.take("alice", None)
    with kept.guard():
        pass
    assert slots.open == 1


def request(headers: dict[str, str], method: str = "GET") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "headers": raw, "query_string": b""})


CHROMIUM = {
    "accept": "text/event-stream",
    "cache-control": "no-cache",
    "sec-fetch-dest": "empty",
    "sec-fetch-mode": "cors",
    "sec-fetch-site": "same-origin",
}


def test_what_looks_like_an_eventsource() -> None:
    assert is_eventsource(request(CHROMIUM))
    assert is_eventsource(request(CHROMIUM | {"last-event-id": "7.0a1b2c3d"}))
    firefox = CHROMIUM | {"accept": "text/event-stream", "cache-control": "", "pragma": "no-cache"}
    assert is_eventsource(request(firefox))
    stream_client = {"accept": "text/event-stream", "cache-control": "no-cache"}
    fetch_reader = {"accept": "text/event-stream", "sec-fetch-dest": "empty"}
    for other in (stream_client, fetch_reader, CHROMIUM | {"accept": "*/*"}):
        assert not is_eventsource(request(other)), other
    assert not is_eventsource(request(CHROMIUM, method="POST"))


@pytest.mark.anyio
async def test_a_refusal_is_a_retry_for_an_eventsource_unless_turned_off() -> None:
    refused = busy("full", 2, "connections")
    for headers, retry, expected in (
        (CHROMIUM, True, 200),
        (CHROMIUM, False, 503),
        ({"accept": "text/event-stream"}, True, 503),
    ):
        req = request(headers)
        answered = await answer(retry)(req, refused)
        assert answered.status_code == expected, (headers, retry)
        if expected == 503:
            assert answered.headers["retry-after"] == "2"
            assert json.loads(bytes(answered.body)) == {"error": "busy", "message": "full"}
        else:
            assert answered.media_type == "text/event-stream"
            assert parse_sse(bytes(answered.body))[1] is not None
    not_room = Refusal(401, "unauthorized", "no token", headers={"www-authenticate": "Bearer"})
    answered = await answer(True)(request(CHROMIUM), not_room)
    assert answered.status_code == 401, "only a refusal for want of room is a retry"
    assert answered.headers["www-authenticate"] == "Bearer"


def test_the_retry_is_jittered_and_names_no_event() -> None:
    seen = set()
    for _ in range(50):
        body = retry_body()
        events, retry, comments = parse_sse(body)
        assert events == [] and comments == 1 and b"id:" not in body
        assert retry is not None and 1000 <= retry <= 3000
        seen.add(retry)
    assert len(seen) > 10


def viewing_of(retry_ms: int, jitter_ms: int) -> Viewing:
    settings = ViewerSettings(retry_ms, jitter_ms, 10.0, 15.0, Limits(10, 10))
    return Viewing(settings, Slots(0, 0), None, cut_off=lambda: None, resumed=lambda: None)


def test_a_viewers_retry_is_drawn_as_ever_and_made_once_per_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Viewing.retry_field``: ``retry_ms`` plus a uniform share of the jitter, the same
    draw as a fresh format of each; the bytes of a value are made once, up to a bound."""
    viewing = viewing_of(2000, 100)
    random.seed(7)
    fields = [viewing.retry_field() for _ in range(2000)]
    random.seed(7)
    assert fields == [sse.retry(2000 + int(random.random() * 101)) for _ in range(2000)]
    assert {parse_sse(f)[1] for f in fields} == set(range(2000, 2101))
    assert len({id(f) for f in fields}) == 101, "one bytes object per value"
    monkeypatch.setattr(opening, "RETRY_FIELDS", 0)
    wide = viewing_of(2000, 100)
    assert parse_sse(wide.retry_field())[1] in range(2000, 2101)
    assert wide._retry_fields == {}, "past the bound, each is made anew"


def test_a_viewers_state_without_a_grant_is_made_once_and_is_as_made_anew() -> None:
    """``Viewing.state``: with no JWT's grant and the front-end's own verifier (most
    viewers), one of the states made at start, equal to one made anew; else made anew."""
    viewing = viewing_of(2000, 100)
    hub = object()
    viewing.started(hub, object(), lambda *_: False)  # type: ignore[arg-type]
    for vouched in (None, True, False):
        for turn in (True, False):
            state = viewing.state(None, verifier=None, vouched=vouched, turn=turn)
            made = ViewerState(None, None, hub, viewing.slots, viewing.settings.limits)  # type: ignore[arg-type]
            assert state == made._replace(vouched=vouched, turn=turn)
            assert viewing.state(None, verifier=None, vouched=vouched, turn=turn) is state
    grant = Grant("alice", read=("s1",))
    granted = viewing.state(grant, verifier=None)
    assert granted.grant is grant and granted.room is hub
    other = object()
    assert viewing.state(None, verifier=other).verifier is other  # type: ignore[arg-type]


def test_a_resume_point_names_at_most_the_streams_a_connection_follows() -> None:
    assert len(parse("-." + ",".join(f"~s{i}=1" for i in range(5)), 5)[1]) == 5
    with pytest.raises(BadResumePoint, match="at most 5"):
        parse("-." + ",".join(f"~s{i}=1" for i in range(6)), 5)
    with pytest.raises(BadResumePoint):
        parse("-." + "~s=1," * 20_000, None)  # longer than any id issued


@pytest.mark.anyio
async def test_a_resume_point_keeps_only_the_streams_the_request_covers() -> None:
    bases = Bases(None, 60)  # type: ignore[arg-type]  # "-" names no base: Redis unused
    raw = "-.~mine-1=3.0a0b0c0d,~victim=11.00000000,~mine-2=5,~mine-1=4.0e0f0a0b"
    cursor = await bases.resume(raw, lambda s: s.startswith("mine-"), 10)
    assert cursor.positions == {"mine-1": (4, "0e0f0a0b"), "mine-2": (5, "")}
    # They moved since the base: the connection's next id still says them.
    assert cursor.id == b"-.~mine-1=4.0e0f0a0b,~mine-2=5"
    with pytest.raises(BadResumePoint):
        await bases.resume(raw, lambda s: True, 3)  # 4 deltas


class OneBase:
    """Redis holding one base: three positions."""

    async def get(self, key: str) -> bytes:
        return json.dumps([["a", 1, ""], ["b", 2, ""], ["victim", 3, ""]]).encode()

    async def expire(self, key: str, ttl: int) -> None:
        pass


@pytest.mark.anyio
async def test_a_base_is_cut_to_the_covered_streams_and_to_the_most_followed() -> None:
    bases = Bases(OneBase(), 60)  # type: ignore[arg-type]
    raw = "0123456789abcdef.0=5,~c=1"
    cursor = await bases.resume(raw, lambda s: s != "victim", 10)
    assert cursor.positions == {"a": (5, ""), "b": (2, ""), "c": (1, "")}
    assert cursor.id == b"0123456789abcdef.0=5,~c=1"
    cursor = await bases.resume(raw, lambda s: s != "victim", 2)
    assert cursor.positions == {"a": (5, ""), "b": (2, "")}  # the lowest names
    assert cursor.id == b"0123456789abcdef.0=5"


# --- an SSE response gives its slot back however it ends ---


class Ended:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def response(body: Any, ended: Ended, send_timeout: float = 5) -> SSEResponse:
    return SSEResponse(
        body, first=b"", headers={}, send_timeout=send_timeout, stream_id="s", on_end=ended
    )


SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "headers": []}


async def never_disconnects() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError


async def sent(message: Any) -> None:
    pass


@pytest.mark.anyio
async def test_a_response_gives_its_slot_back_at_its_end_and_when_its_body_fails() -> None:
    async def two(writer: Writer | None) -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    ended = Ended()
    await response(two, ended)(SCOPE, never_disconnects, sent)
    assert ended.calls == 1

    async def broken(writer: Writer | None) -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise RuntimeError("Redis went away")

    ended = Ended()
    with pytest.RaisesGroup(RuntimeError, allow_unwrapped=True, flatten_subgroups=True):
        await response(broken, ended)(SCOPE, never_disconnects, sent)
    assert ended.calls == 1


async def forever(writer: Writer | None) -> AsyncIterator[bytes]:
    while True:
        yield b": ping\n\n"
        await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_response_gives_its_slot_back_when_the_client_leaves() -> None:
    async def leaves() -> dict[str, Any]:
        await anyio.sleep(0.05)
        return {"type": "http.disconnect"}

    ended = Ended()
    await response(forever, ended)(SCOPE, leaves, sent)
    assert ended.calls == 1


@pytest.mark.anyio
async def test_a_response_gives_its_slot_back_when_a_slow_viewer_is_cut_off() -> None:
    async def stuck(message: Any) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            await anyio.sleep_forever()  # the socket takes nothing

    ended = Ended()
    await response(forever, ended, send_timeout=0.05)(SCOPE, never_disconnects, stuck)
    assert ended.calls == 1
