"""pytest-timeout's alarm, raised only where a test's failure can be reported (a pytest
plugin, loaded by tests/conftest.py).

pytest-timeout (method ``signal``) raises its failure wherever the main thread is when a
test's time is up. In a report hook between a test's phases (hypothesis writes a failing
example's patch there, which can take seconds) that is an internal error: it ends the
test process's session and, under pytest-xdist, the whole run. And a property test took
pytest's ``Failed`` for a failing example of its own, then ran the slow test again and
again to shrink it, past the timeout, until the watchdog ended its process.

Here the timer is pytest-timeout's (its timeout, its cancel), but the alarm raises
``TestTimedOut`` only inside a test's setup, call or teardown; fired between them, it
fires again every ``RETRY_S`` until the next phase runs (or pytest-timeout cancels it
when the test's protocol ends). ``TestTimedOut`` is no ``Exception`` and no ``Failed``,
so hypothesis lets it through at once; pytest reports the phase it ends as failed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest
from pytest_timeout import dump_stacks  # type: ignore[import-untyped]

RETRY_S = 0.05
"""How soon an alarm that fired between phases fires again."""

IN_PHASE = pytest.StashKey[bool]()


class TestTimedOut(BaseException):
    """A test ran past its pytest-timeout timeout."""

    __test__ = False  # not a test class, whatever pytest's collector sees in the name


def _alarm(item: pytest.Item, timeout: float) -> None:
    """The signal's handler: raise in a phase, else look again shortly."""
    __tracebackhide__ = True
    if not item.stash.get(IN_PHASE, False):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    dump_stacks(item.config.get_terminal_writer())  # where every thread was, as pytest-timeout
    raise TestTimedOut(f"Timeout (>{timeout}s) from pytest-timeout.")


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """The signal method's timer with ``_alarm`` as its handler; other methods (and a
    test run off the main thread) are pytest-timeout's own."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        _alarm(item, settings.timeout)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel calls it
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


def _in_phase(item: pytest.Item) -> Generator[None, object, object]:
    item.stash[IN_PHASE] = True
    try:
        return (yield)
    finally:
        item.stash[IN_PHASE] = False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _in_phase(item))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _in_phase(item))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _in_phase(item))
