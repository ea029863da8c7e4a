"""The front-end's garbage-collection freezer: what a full collection leaves is frozen
(the next one scans only what is new), and thawed once enough viewers have left."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator

import pytest

from broadcaster.transport import gcfreeze
from broadcaster.transport.gcfreeze import Freezer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Viewers:
    def __init__(self) -> None:
        self.open = 0
        self.left = 0

    def __call__(self) -> tuple[int, int]:
        return self.open, self.left

    def join(self, n: int) -> None:
        self.open += n

    def leave(self, n: int) -> None:
        self.open -= n
        self.left += n


async def test_a_full_collection_freezes_what_it_leaves() -> None:
    viewers = Viewers()
    with Freezer(viewers) as freezer:
        assert freezer.freezes == 1 and gc.get_freeze_count() > 0  # start-up's objects
        kept = [[object()] for _ in range(5000)]  # like viewers' objects: tracked, alive
        frozen = gc.get_freeze_count()
        gc.collect(1)  # not a full collection: nothing frozen
        await asyncio.sleep(0)
        assert freezer.freezes == 1
        gc.collect()
        await asyncio.sleep(0)  # the freeze runs from the loop, after the callback
        assert freezer.freezes == 2
        assert gc.get_freeze_count() - frozen > 0.9 * len(kept)  # kept, now frozen
    assert freezer._callback not in gc.callbacks
    gc.collect()
    await asyncio.sleep(0)
    assert freezer.freezes == 2  # left: no longer called


async def test_thawed_once_a_quarter_of_the_viewers_frozen_have_left() -> None:
    viewers = Viewers()
    viewers.join(20_000)
    with Freezer(viewers) as freezer:
        assert freezer.freezes == 1
        viewers.leave(4_999)  # a quarter is 5,000
        assert not freezer.check() and gc.get_freeze_count() > 0
        viewers.leave(1)
        assert freezer.check() and freezer.thaws == 1
        assert gc.get_freeze_count() == 0
        assert not freezer.check()  # counted from the thaw on


async def test_a_small_process_thaws_only_once_many_have_left() -> None:
    viewers = Viewers()
    viewers.join(2 * gcfreeze.THAW_LEAST)
    with Freezer(viewers) as freezer:
        viewers.leave(gcfreeze.THAW_LEAST - 1)  # well over a quarter, under THAW_LEAST
        assert not freezer.check() and freezer.thaws == 0
        viewers.leave(1)
        assert freezer.check() and freezer.thaws == 1


async def test_the_thaw_loop_checks_on_its_own() -> None:
    viewers = Viewers()
    viewers.join(4000)
    with Freezer(viewers) as freezer:
        task = asyncio.create_task(freezer.run(every=0.01))
        viewers.leave(1000)
        for _ in range(200):
            if freezer.thaws:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert freezer.thaws == 1


async def test_a_full_collection_on_another_thread_freezes_from_the_loop() -> None:
    """A body thread's allocations start collections there too: the freeze is handed to
    the loop safely (in asyncio's debug mode a plain ``call_soon`` from another thread
    raises, inside the collector's callback, where nothing would see it)."""
    loop = asyncio.get_running_loop()
    unraisable: list[object] = []
    debug, hook = loop.get_debug(), sys.unraisablehook
    loop.set_debug(True)
    sys.unraisablehook = unraisable.append
    try:
        with Freezer(Viewers()) as freezer:
            await asyncio.to_thread(gc.collect)
            for _ in range(200):
                if freezer.freezes == 2:
                    break
                await asyncio.sleep(0.01)
            assert freezer.freezes == 2 and not unraisable, unraisable
    finally:
        sys.unraisablehook = hook
        loop.set_debug(debug)


def test_full_collections_are_spaced_and_the_thresholds_put_back() -> None:
    before = gc.get_threshold()
    try:
        replaced = gcfreeze.spaced_full_collections()
        assert replaced == before
        assert gc.get_threshold() == (before[0], before[1], gcfreeze.FULL_EVERY)
        assert before[2] < gcfreeze.FULL_EVERY
    finally:
        gc.set_threshold(*before)
