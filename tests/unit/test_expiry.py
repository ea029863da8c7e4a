"""``viewers.expiry``: open responses end with their token, from one timer over buckets of
a second, forgotten when they end first; a revocation ends those it names; an SSE
response then says its last words and ends, even one whose token ended before it
began; and ``auth.revocations``' rule of what a revocation names (a token by id, a
subject's tokens issued before it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from broadcaster.auth.revocations import Revocations, Revoked
from broadcaster.auth.tokens import Grant
from broadcaster.core import sse
from broadcaster.core.sse import Writer
from broadcaster.viewers import expiry
from broadcaster.viewers.expiry import EXPIRED, REVOKED, Expiries, Expiry, Held
from broadcaster.viewers.response import SSEResponse
from tests.support.polling import until

pytestmark = pytest.mark.anyio


class Response:
    def __init__(self) -> None:
        self.ended: list[str] = []
        self.at = 0.0

    def end_token(self, reason: str) -> None:
        self.ended.append(reason)
        self.at = time.time()


def entry(after: float, jti: str | None = None, sub: str | None = None) -> Expiry:
    return Expiry(time.time() + after, jti, sub, time.time() - 10)


async def test_responses_end_at_their_tokens_end_and_not_once_gone() -> None:
    expiries = Expiries()
    soon, later, gone = Response(), Response(), Response()
    expiries.watch(entry(0.2), soon)
    expiries.watch(entry(1.5), later)
    gone_entry = entry(0.2)
    expiries.watch(gone_entry, gone)
    expiries.forget(gone_entry)  # its response ended first
    assert len(expiries) == 2
    await until(lambda: later.ended, "the later token's end", within=5)
    assert soon.ended == [EXPIRED] and later.ended == [EXPIRED] and gone.ended == []
    assert later.at - soon.at > 0.5, "each at its own second"
    assert len(expiries) == 0 and expiries.ended == 2
    expiries.close()


async def test_an_entry_past_its_end_ends_at_once_and_a_herd_over_several_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(expiry, "PER_TURN", 10)
    expiries = Expiries()
    herd = [Response() for _ in range(35)]
    for response in herd:
        expiries.watch(entry(-1), response)
    for _ in range(20):
        await asyncio.sleep(0)
        if all(r.ended for r in herd):
            break
    assert all(r.ended == [EXPIRED] for r in herd)
    expiries.close()


async def test_a_revocation_ends_those_it_names() -> None:
    expiries = Expiries()
    mine, theirs, by_sub = Response(), Response(), Response()
    expiries.watch(entry(600, jti="j1", sub="u1"), mine)
    expiries.watch(entry(600, jti="j2", sub="u2"), theirs)
    expiries.watch(entry(600, sub="u3"), by_sub)

    def revoked(jti: str | None, sub: str | None, issued: float | None) -> bool:
        return jti == "j1" or sub == "u3"

    assert expiries.end_revoked(revoked) == 2
    assert mine.ended == [REVOKED] and by_sub.ended == [REVOKED] and theirs.ended == []
    assert len(expiries) == 1


def test_an_expiry_of_a_jwt_and_of_a_legacy_token() -> None:
    grant = Grant("u1", expires=1000.0, jti="j", issued=900.0)
    made = Expiry.of(grant, None, 5)
    assert made is not None
    assert (made.ends_at, made.jti, made.subject, made.issued) == (1005.0, "j", "u1", 900.0)
    legacy = Expiry.of(None, "v1.1700000000.sig", 5)
    assert legacy is not None and legacy.ends_at == 1700000005
    assert Expiry.of(None, None, 5) is None


def test_what_a_revocation_names() -> None:
    by_id = Revoked("abc", None, 0.0, 200.0)
    assert Revoked.parse(by_id.member(), 200.0) == by_id
    by_sub = Revoked(None, "user:42", 100.5, 200.0)
    assert by_sub.member() == "s:100500:user:42"
    assert Revoked.parse(by_sub.member(), 200.0) == by_sub
    for bad in ("x:1", "j:", "s:abc:u", "s:100:"):
        assert Revoked.parse(bad, 1.0) is None, bad


def test_a_subjects_revocation_names_its_tokens_issued_before_it() -> None:
    revocations = Revocations(None, None, keep=600, limit=10)  # type: ignore[arg-type]
    now = time.time()
    revocations.woken("revoke", f"{now + 600:.3f} j:abc")
    revocations.woken("revoke", f"{now + 600:.3f} s:{int(now * 1000)}:carol")
    revocations.woken("revoke", f"{now - 1:.3f} j:old")  # held no longer
    revocations.woken("revoke", "garbage")  # logged, nothing learnt
    assert revocations.revokes("abc", None, None)
    assert not revocations.revokes("old", None, None)
    assert revocations.revokes(None, "carol", now - 5)
    assert revocations.revokes(None, "carol", None), "no iat: taken as issued before"
    assert not revocations.revokes(None, "carol", now + 2), "issued after: it opens"
    assert not revocations.revokes("other", "dave", now - 5)
    told = []
    revocations.on_revoked = lambda: told.append(1)
    revocations.woken("revoke", f"{now + 600:.3f} j:next")
    revocations.woken("end", "some-stream")  # another listener's message
    assert told == [1]


SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "headers": []}


async def never_disconnects() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError


async def forever(writer: Writer | None) -> AsyncIterator[bytes]:
    while True:
        yield b": ping\n\n"
        await anyio.sleep(0.01)


@pytest.mark.parametrize("ends_in", [600.0, -1.0], ids=["revoked while open", "already over"])
async def test_a_response_says_its_last_words_then_ends(ends_in: float) -> None:
    sent: list[dict[str, Any]] = []

    async def record(message: Any) -> None:
        sent.append(message)

    expiries = Expiries()
    held = Held(Expiry(time.time() + ends_in, "j1", None, None), expiries, sse.token_ended)
    response = SSEResponse(
        forever, first=b"", headers={}, send_timeout=5, stream_id="s", token=held
    )
    serving = asyncio.create_task(response(SCOPE, never_disconnects, record))
    if ends_in > 0:
        await until(lambda: len(sent) > 3, "the response streams")
        assert len(expiries) == 1
        assert expiries.end_revoked(lambda jti, sub, issued: jti == "j1") == 1
        reason = REVOKED
    else:
        reason = EXPIRED
    await asyncio.wait_for(serving, 5)
    assert sent[0]["type"] == "http.response.start"
    assert sent[-2]["body"] == sse.token_ended(reason), sent[-3:]
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert len(expiries) == 0
    expiries.close()
