"""A large publish body's events are checked where the body is parsed (``feeds``), with
the refusal an append would answer: the same status, code and message, answered where
the append would have answered it; a small body's are left to the append."""

from __future__ import annotations

import json
from typing import Any

import fakeredis.aioredis
import pytest

from broadcaster.core import eventlog
from broadcaster.core.eventlog import EventLog
from broadcaster.http.errors import ApiError
from broadcaster.http.feeds import append_feed, parsed_batch

pytestmark = pytest.mark.anyio


def _body(events: Any) -> bytes:
    return json.dumps(events).encode()


async def _append_refusal(log: EventLog, events: Any) -> ApiError:
    with pytest.raises(ApiError) as refused:
        await append_feed(log, "s", events, None)
    return refused.value


@pytest.mark.parametrize(
    "events",
    [
        {"type": "data-x", "data": [0] * 40_000},  # over the event limit once encoded
        [{"type": "finish"}, {"type": "data-x"}],  # a terminal event not last
    ],
)
async def test_a_large_bodys_refusal_is_the_appends(events: Any) -> None:
    log = EventLog(fakeredis.aioredis.FakeRedis())
    batch = parsed_batch(_body(events), log.checked, large=True)
    assert batch.events == (events if isinstance(events, list) else [events])
    expected = await _append_refusal(log, batch.events)
    assert batch.refused is not None
    assert (batch.refused.status, batch.refused.code, batch.refused.message) == (
        expected.status,
        expected.code,
        expected.message,
    )
    assert parsed_batch(_body(events), log.checked, large=False).refused is None


async def test_events_an_append_takes_are_not_refused() -> None:
    log = EventLog(fakeredis.aioredis.FakeRedis())
    events = [{"type": "data-x", "data": [0] * 100}] * 3
    large = parsed_batch(_body(events), log.checked, large=True)
    small = parsed_batch(_body(events), log.checked, large=False)
    assert large.events == small.events == events
    assert large.refused is None and small.refused is None
    assert large.stored == log.checked(events) and small.stored is None


async def test_a_checked_batch_is_stored_as_checked_and_not_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The append takes the events as the check made them in the pool: it does not
    encode them again on the event loop."""
    log = EventLog(fakeredis.aioredis.FakeRedis())
    events = [{"type": "data-x", "data": [n] * 100} for n in range(3)]
    batch = parsed_batch(_body(events), log.checked, large=True)

    def not_again(_: object) -> None:
        raise AssertionError("the append encoded a checked batch again")

    sent: list[Any] = []

    async def script(_: object, __: object, args: list[Any], **___: object) -> list[bytes]:
        sent.extend(args)
        return [b"OK", b"3"]

    monkeypatch.setattr(eventlog, "dump_batch", not_again)
    monkeypatch.setattr(log.durability, "script", script)
    assert await append_feed(log, "s", batch.events, None, batch.stored) == 3
    assert batch.stored is not None
    assert sent[-2 * len(events) :] == [part for pair in batch.stored for part in pair]


def test_a_body_that_is_not_events_is_refused_at_once() -> None:
    log = EventLog(fakeredis.aioredis.FakeRedis())
    for raw, code in [(b"{", "invalid_json"), (b"[]", "invalid_event")]:
        with pytest.raises(ApiError) as refused:
            parsed_batch(raw, log.checked, large=True)
        assert (refused.value.status, refused.value.code) == (422, code)
