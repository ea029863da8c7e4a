"""One read of Redis shared by the callers that ask for the same thing at once.

When a front-end dies, its viewers reconnect together, each to another front-end, each
asking where its stream is and for the events since its ``Last-Event-ID``: mostly the
same stream, at the same position. Shared by key, the herd costs Redis a few reads per
stream, not one per viewer.

A shared read is never older than its caller. A viewer subscribes first and reads the
log after: what the read does not hold, the subscription brings. A read already sent to
Redis when the viewer subscribed could miss an event published just before it
subscribed, so a caller never joins a read in flight; it joins the *next* read, which is
sent when the one in flight has answered, after every caller that joined it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from broadcaster.core import contain


class Coalesce:
    """Reads by key: at most one in flight and one waiting to be sent per key. Each is a
    task of its own, awaited shielded: a caller that leaves does not cancel it for the
    others; ``aclose`` cancels what is left."""

    def __init__(self) -> None:
        self._flying: dict[Hashable, asyncio.Task[Any]] = {}
        self._waiting: dict[Hashable, asyncio.Task[Any]] = {}
        self.shared = 0
        """Reads a caller did not have to make (it joined one not yet sent)."""

    async def run(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        task = self._waiting.get(key)
        if task is not None:
            self.shared += 1
        else:
            task = asyncio.ensure_future(self._send(key, self._flying.get(key), read))
            task.add_done_callback(_retrieve)
            self._waiting[key] = task
        return await asyncio.shield(task)

    async def _send(
        self, key: Hashable, before: asyncio.Task[Any] | None, read: Callable[[], Awaitable[Any]]
    ) -> Any:
        if before is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(before)
        task = self._waiting.pop(key)  # sent now: later callers wait for the next one
        self._flying[key] = task
        try:
            return await read()
        finally:
            if self._flying.get(key) is task:
                del self._flying[key]

    async def aclose(self) -> None:
        tasks = [*self._waiting.values(), *self._flying.values()]
        await contain.cancel_until_ended(tasks, raising=False)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """An error reaches the callers; with every caller gone, not the loop's log."""
    if not task.cancelled():
        task.exception()
