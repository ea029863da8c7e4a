"""The limits' pure parts (``http/limits.py``, ``core/mux.py``'s resume points): slots per
subject and per address, given back once and only once; what looks like a browser's
EventSource, and the retry it is told; a resume point's positions cut to the streams a
request covers and to the most a connection follows; and an SSE response that gives its
slot back however it ends."""

from __future__ import annotations

import json

import pytest

from broadcaster.core.mux import BadResumePoint, Bases, parse


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
