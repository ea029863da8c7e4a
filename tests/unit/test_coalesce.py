"""Shared reads (core/coalesce.py): one read for callers that arrive together, and never
a read older than its caller."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster.core.coalesce import Coalesce

pytestmark = pytest.mark.anyio


class Store:
    """A value that changes, read slowly: each read reports the value when it was sent."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0

    async def read(self) -> int:
        self.reads += 1
        seen = self.value
        await asyncio.sleep(0.05)
        return seen


async def test_callers_arriving_together_share_one_read() -> None:
    shared, store = Coalesce(), Store()
    results = await asyncio.gather(*(shared.run("k", store.read) for _ in range(100)))
    assert results == [0] * 100
    assert store.reads == 1
    assert shared.shared == 99


async def test_a_caller_never_joins_a_read_already_sent() -> None:
    shared, store = Coalesce(), Store()
    first = asyncio.create_task(shared.run("k", store.read))
    await asyncio.sleep(0.01)  # the first read is in flight, holding value 0
    store.value = 1  # ... and the value changes before the late callers arrive
    late = [asyncio.create_task(shared.run("k", store.read)) for _ in range(50)]
    assert await first == 0
    assert await asyncio.gather(*late) == [1] * 50, "each late caller sees the new value"
    assert store.reads == 2, "the late callers shared the one read sent after the first"


async def test_keys_are_read_apart() -> None:
    shared, store = Coalesce(), Store()
    await asyncio.gather(shared.run("a", store.read), shared.run("b", store.read))
    assert store.reads == 2


async def test_an_error_reaches_every_caller_and_the_next_read_is_made_anew() -> None:
    shared = Coalesce()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("redis went away")

    outcomes = await asyncio.gather(
        *(shared.run("k", failing) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert calls == 1
    with pytest.raises(ConnectionError):
        await shared.run("k", failing)
    assert calls == 2


async def test_a_caller_that_leaves_does_not_cancel_the_read_for_the_others() -> None:
    shared, store = Coalesce(), Store()
    leaving = asyncio.create_task(shared.run("k", store.read))
    staying = asyncio.create_task(shared.run("k", store.read))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying == 0
    assert leaving.cancelled()


async def test_aclose_cancels_reads_in_flight() -> None:
    shared, store = Coalesce(), Store()
    caller = asyncio.create_task(shared.run("k", store.read))
    await asyncio.sleep(0.01)
    await shared.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller
