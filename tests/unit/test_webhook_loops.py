"""A deliverer's loops end when cancelled, even when the cancel comes back out of a Redis
call as a Redis error (a client that drops the connection of a blocking read it was
cancelled in): otherwise ``Deliverer.stop`` waits for them for ever."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.core import contain
from broadcaster.webhooks.deliverer import _forever

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("error", [RedisConnectionError("read cancelled"), RuntimeError("bug")])
async def test_a_loop_ends_when_its_cancel_comes_back_as_an_error(error: Exception) -> None:
    reading = asyncio.Event()

    async def loop() -> None:
        reading.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise error from None

    task = asyncio.create_task(_forever(contain.Outage("test-loop", logging.getLogger()), loop))
    await reading.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=10)
    assert done == {task}, "the loop went on after its cancel"
    assert task.cancelled()
