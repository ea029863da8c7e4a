"""A watchdog over each test (a pytest plugin, loaded by tests/conftest.py).

pytest-timeout's signal ends a test that runs past its timeout, but only where the test
returns to Python, and nothing bounds the teardown that runs after it fired: a fixture
waiting on a process that never exits would hold the run until the machine's own limit,
with nothing said about where. Here every test also has a hard limit, its timeout plus
``GRACE_S`` (setup, call and teardown, not the wait for its turn in tests/conftest.py):
past it, every thread's stack is written to the terminal and the test's process ends.
pytest-xdist then reports the test as crashed, starts another process and goes on; that
process fails the test at once if it is handed it again (xdist hands a crashed test's module
out again whole), rather than let it hang there too.

And with several processes a failing test is named the moment it fails, not only in the
summary at the end, so that a run cut short still says which tests had failed.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import time
from collections.abc import Generator

import pytest
from _pytest.faulthandler import fault_handler_stderr_fd_key  # pytest's own stderr copy

from tests.support import rundir

GRACE_S = 120.0
"""How long past its timeout a test (then its teardown) may go on before its process ends."""


def limit_s(item: pytest.Item) -> float:
    """The test's hard limit: its pytest-timeout timeout plus the grace; 0 for none."""
    marker = item.get_closest_marker("timeout")
    timeout = marker.args[0] if marker and marker.args else item.config.getini("timeout")
    return float(timeout) + GRACE_S if timeout and float(timeout) > 0 else 0.0


DEADLINE = pytest.StashKey[float]()


def _arm(item: pytest.Item, seconds: float) -> None:
    stderr = item.config.stash[fault_handler_stderr_fd_key]
    faulthandler.dump_traceback_later(seconds, exit=True, file=stderr)


@pytest.hookimpl(wrapper=True, trylast=True)  # inside the wait for a turn (tests/conftest.py)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    limit = limit_s(item)
    if not limit:
        return (yield)
    item.stash[DEADLINE] = time.monotonic() + limit
    _arm(item, limit)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Armed again: pytest disarms every such dump when a test fails (its
    ``pytest_exception_interact``), and the teardown after a failure is the one to bound."""
    if DEADLINE in item.stash:
        _arm(item, max(item.stash[DEADLINE] - time.monotonic(), GRACE_S))


CRASHED = "crashed"
"""The file, in the run's folder (``rundir``), of the tests that ended their process."""


class Controller:
    """(The controller of several processes.) A failed test's id, written as it comes; the
    tests that ended their process, written to ``CRASHED`` for the processes to read."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if report.failed and hasattr(report, "node") and reporter is not None:
            reporter.write("\n")
            reporter.write_line(
                f"FAILED {report.nodeid} ({report.when}, {report.duration:.1f} s)", red=True
            )

    def pytest_handlecrashitem(self, crashitem: str) -> None:
        path = os.path.join(rundir.made(self.config), CRASHED)
        with open(path, "a", encoding="utf-8") as crashed:
            crashed.write(crashitem + "\n")


def pytest_configure(config: pytest.Config) -> None:
    several = bool(getattr(config.option, "numprocesses", None))  # pytest-xdist's -n
    if several and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Controller(config), "watchdog-controller")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    folder = rundir.of(item.config)
    if folder is None:
        return
    with contextlib.suppress(FileNotFoundError), open(os.path.join(folder, CRASHED)) as lines:
        if item.nodeid + "\n" in lines:
            pytest.fail("not run again: it ended its process earlier in this run (above)")
