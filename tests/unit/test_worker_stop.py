"""The worker's stop: a loop, or a generation past the grace period, that takes its
cancel for a timeout of its own (as asyncio.timeout can on Python 3.11 when both land in
one instant) is cancelled again, so stop() never waits forever and a generation is
handed back instead of run to its end."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from worker.daemon import _cancel_and_wait
from worker.dispatch import RunningGenerations

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


async def test_the_drain_cancels_again_a_generation_that_swallowed_its_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the grace period the drain cancels what still runs, to hand it back; one that
    took that cancel for a timeout of its own is cancelled again a second later instead
    of running to its end on a worker that is stopping."""
    import fakeredis

    swallowed = []

    async def generation() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # taken for a timeout: on it goes

    async with asyncio.TaskGroup() as tasks:
        gens = cast(Any, SimpleNamespace(log=SimpleNamespace(redis=fakeredis.FakeAsyncRedis())))
        running = RunningGenerations(
            tasks,
            gens,
            cast(Any, None),
            providers={},
            consumer="w",
            policy=cast(Any, None),
            metrics=cast(Any, None),
            concurrency=1,
            cancel_poll_seconds=1,
        )
        task = tasks.create_task(generation(), name="gen-g1")
        running._running["g1"] = (cast(Any, None), task)
        await asyncio.sleep(0)
        await asyncio.wait_for(running.drain(0.05), 5)
        assert task.cancelled() and swallowed == [1]
    assert "gen-g1 went on after it was cancelled; cancelling it again" in caplog.text
