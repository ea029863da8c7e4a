"""A lingering close (``transport/linger.py``): the write side shut after the answer,
what the client still sends dropped and counted, the connection closed past the bytes
or the time allowed; a request's transport whose close lingers."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster.transport import linger

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


class Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.writes: list[bytes] = []

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("eof")

    def close(self) -> None:
        self.calls.append("close")

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 3


async def test_what_comes_after_the_answer_is_dropped_until_the_bytes_allowed() -> None:
    real = Transport()
    lingering = linger.Lingering(real, asyncio.get_running_loop())
    assert real.calls == ["eof"]  # the answer, then its end: the client reads both
    chunk = b"x" * (1024 * 1024)
    for _ in range(linger.LINGER_BYTES // len(chunk)):
        lingering.drop(chunk)
    assert real.calls == ["eof"]
    lingering.drop(b"y")
    assert real.calls == ["eof", "close"]


async def test_the_time_allowed_closes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linger, "LINGER_SECONDS", 0.01)
    real = Transport()
    closed = asyncio.Event()
    real.close = closed.set  # type: ignore[method-assign]
    linger.Lingering(real, asyncio.get_running_loop())
    await asyncio.wait_for(closed.wait(), 10)  # the timer's, with nothing sent
    assert real.calls == ["eof"]


def test_a_requests_transport_closes_through_the_connection() -> None:
    real = Transport()
    closed: list[bool] = []
    wrapped = linger.ClosesLingering(real, lambda: closed.append(True))
    wrapped.write(b"answer")
    wrapped.close()
    assert real.writes == [b"answer"] and closed == [True] and "close" not in real.calls
    assert wrapped.get_write_buffer_size() == 3  # anything else: the real one's
