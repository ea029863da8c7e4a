"""Waiting in tests: call a check until it holds, or fail after a bound with a message
that says what was awaited. One helper per way a check is called (an async probe whose
value is wanted, a plain predicate from async code, a plain predicate from a thread), so
no test writes its own deadline loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll(
    probe: Callable[[], Awaitable[T]],
    what: str,
    within: float = 30,
    every: float = 0.02,
    context: Callable[[], str] = lambda: "",
) -> T:
    """Await ``probe`` every ``every`` s until it returns something truthy, and return
    that; fail after ``within`` s with ``context()`` (what was last seen) in the message."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}\n{context()}")
        await asyncio.sleep(every)


async def until(
    condition: Callable[[], object], what: str, within: float = 10, every: float = 0.02
) -> None:
    """``poll`` for a plain (not awaited) predicate, from async code."""

    async def probe() -> bool:
        return bool(condition())

    await poll(probe, what, within, every)


def wait_for(
    what: str,
    check: Callable[[], object],
    within: float = 30,
    every: float = 0.05,
    context: Callable[[], str] = lambda: "",
) -> None:
    """Call ``check`` every ``every`` s from a thread until it holds; fail after
    ``within`` s with ``context()`` (a stack's logs, say) in the message."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s\n{context()}")
        time.sleep(every)
