"""Keepalives of a connection that follows many streams (``dashboard/feed.py``): while it
sleeps, the hub's keepalive task pings its socket directly, as it does a single-stream
viewer's, and its task is woken only when the socket does not take the ping."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from broadcaster.dashboard.cursor import Cursor
from broadcaster.dashboard.feed import PING_CHUNK, Connection
from broadcaster.fanout.keepalive import Keepalive

pytestmark = pytest.mark.anyio


def _connection(keepalive: Keepalive) -> Connection:
    hub: Any = SimpleNamespace(keepalive=keepalive)
    unused: Any = None  # no stream is followed: neither the log nor the bases are read
    return Connection(
        hub=hub,
        log=unused,
        bases=unused,
        cursor=Cursor.empty(),
        streams=[],
        prefixes=[],
        limit=10,
        keepalive=keepalive.interval,
    )


async def test_a_sleeping_connection_is_pinged_without_waking_its_task() -> None:
    keepalive = Keepalive(1.0)
    conn = _connection(keepalive)
    written: list[bytes] = []
    takes = [True]
    conn.last_write = t0 = asyncio.get_running_loop().time()

    def write(chunk: bytes) -> bool:
        ok = takes.pop(0) if takes else True
        if ok:
            written.append(chunk)
        return ok

    waiting = asyncio.create_task(conn._wait(write))
    await asyncio.sleep(0)
    assert len(keepalive) == 1
    keepalive.tick(t0 + 0.5)  # not due yet
    keepalive.tick(t0 + keepalive.due_after)
    assert written == [PING_CHUNK] and conn.last_write == t0 + keepalive.due_after
    conn.last_write = t0 + 1.5  # the fan-out wrote events meanwhile: no ping for them
    keepalive.tick(t0 + 2 * keepalive.due_after)
    assert written == [PING_CHUNK]
    await asyncio.sleep(0)
    assert not waiting.done()  # every ping so far went without the task
    takes.append(False)  # a full socket: the ping goes through the task
    keepalive.tick(t0 + 1.5 + keepalive.due_after)
    assert await waiting is True and conn.ping_due and conn.direct is None
