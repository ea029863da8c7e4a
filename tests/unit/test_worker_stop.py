"""The worker's stop: a loop that takes its cancel for a timeout of its own (as
asyncio.timeout can on Python 3.11 when both land in one instant) is cancelled again,
so stop() never waits forever."""

from __future__ import annotations

import asyncio

import pytest

from worker.runner import _cancel_and_wait

pytestmark = pytest.mark.anyio


async def test_a_loop_that_swallows_its_cancel_is_cancelled_again() -> None:
    rounds = []

    async def loop() -> None:
        swallowed = False
        while True:
            rounds.append(1)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True  # taken for a timeout: round again, as the loop would

    task = asyncio.create_task(loop(), name="swallowing-loop")
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(_cancel_and_wait(task), 5)
    assert task.cancelled()
    assert len(rounds) == 2
    assert asyncio.get_running_loop().time() - started < 3


async def test_a_loop_that_ends_at_once_is_waited_for_once() -> None:
    async def loop() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel_and_wait(task), 1)
    assert task.cancelled()


async def test_an_error_of_the_loop_is_not_hidden() -> None:
    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("broke while stopping") from None

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broke while stopping"):
        await _cancel_and_wait(task)
