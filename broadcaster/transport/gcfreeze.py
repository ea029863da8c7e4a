"""Full garbage collections that scan only what is new.

CPython's full collection scans every tracked object, and runs whenever the objects that
survived into the oldest generation have grown by a quarter since the last one. An open
viewer is dozens of tracked objects (uvicorn's protocol and cycle, the response, its
coroutines, the subscription), none of them garbage while it watches. So while a herd
of viewers connects, full collections run, find nothing, and stall the event loop
(every viewer's next frame) longer each time (figures: docs/performance.md).

So the survivors of each full collection are frozen (``gc.freeze``): the next one scans
only what came since. Frozen
objects freed by their reference count leave the frozen set as usual; only cycles among
them would wait, which is why it thaws (``gc.unfreeze``) once a quarter of the viewers
open at the last freeze have left: the next full collection then scans everything once,
frees those cycles, and freezes again.

And full collections are spaced (``FULL_EVERY``): with little unfrozen, Python's own rule
(a quarter more survivors than the last full one left) is met at once, so a full one ran
every ten collections of the middle generation, each scanning whatever large request
bodies were being parsed then, holding the interpreter's lock all along (the event loop
waits for it, whichever thread runs the collection).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

from broadcaster.core import contain

log = logging.getLogger("broadcaster.gc")

FULL_EVERY = 100
"""Collections of the middle generation between two full ones, at least (Python's own
is 10): a full one scans what the young ones left, mostly objects that are still alive
(bodies being parsed) and that scanning more often does not free sooner; garbage cycles
wait a little longer for it."""


def spaced_full_collections() -> tuple[int, int, int]:
    """Full collections at most every ``FULL_EVERY`` collections of the middle generation;
    the thresholds that were set, to put back."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], FULL_EVERY)
    return before


THAW_SHARE = 0.25
"""Viewers gone, as a share of those open at the last freeze, that thaw the frozen set."""
THAW_LEAST = 1000
"""... and at least this many: a few hundred closed connections are not worth a scan of
every object."""


class Freezer:
    """Freezes what each full collection leaves (``gc.callbacks``); thaws once
    ``THAW_SHARE`` of the viewers open then have left. ``viewers()`` gives the viewers
    open now and how many have left since start."""

    def __init__(self, viewers: Callable[[], tuple[int, int]]) -> None:
        self._viewers = viewers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_at_freeze = 0
        self._left_at_freeze = 0
        self.freezes = 0
        self.thaws = 0

    def __enter__(self) -> Freezer:
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._callback)
        self._freeze()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2 or self._loop is None:
            return
        # Not inside the collector's callback: right after it, from the loop. The
        # collection may run on any thread (a body thread's allocations start one).
        self._loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
        self._open_at_freeze, self._left_at_freeze = self._viewers()

    def check(self) -> bool:
        """Thaw if enough of the viewers frozen with their objects have left since (call
        it now and then); True if it did."""
        open_, left = self._viewers()
        gone = left - self._left_at_freeze
        if gone < max(THAW_LEAST, THAW_SHARE * self._open_at_freeze):
            return False
        gc.unfreeze()
        self.thaws += 1
        self._open_at_freeze, self._left_at_freeze = open_, left
        log.info("%d viewers left since the last freeze: thawed for the next full collection", gone)
        return True

    async def run(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                self.check()
            except Exception:
                contain.loop_failed("gc-thaw", log)
