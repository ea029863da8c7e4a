"""pytest-timeout's alarm under the suite's plugin (tests/support/timeouts.py), in a pytest
of its own: fired in a report hook, it ends no run; fired in a property test, it fails
that test once, with no shrinking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

SLOW_REPORT_HOOK = """
import time, pytest

pytest_plugins = ["tests.support.timeouts"]

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if item.name == "test_failing" and call.when == "call":
        time.sleep(2.5)  # past the timeout, as hypothesis's patch for a failing example can be
    return report
"""

TESTS = """
import time
from hypothesis import given, settings, strategies as st

def test_failing():
    assert False

def test_after():
    pass

@settings(max_examples=10_000, deadline=None, database=None)
@given(st.integers())
def test_property_past_its_timeout(x):
    time.sleep(0.1)
"""
# Each example sleeps long beside hypothesis's own work between examples, so the alarm
# lands in the test's body: one landing inside hypothesis's engine (a loaded run's
# chance) leaves its data half-made, and it reports that as inconsistent generation.


PLUGINS_OFF = [
    "xdist",
    "anyio",
    "cacheprovider",
    "valkey",
    "asyncio",
    "langsmith_plugin",
    "schemathesis",
]
"""Installed plugins this run needs not: their imports would cost it seconds of CPU."""


def test_an_alarm_ends_no_run_and_a_property_test_past_its_timeout_fails_unshrunk(
    tmp_path: Path,
) -> None:
    tmp_path.joinpath("conftest.py").write_text(SLOW_REPORT_HOOK)
    tmp_path.joinpath("test_them.py").write_text(TESTS)
    off = [arg for name in PLUGINS_OFF for arg in ("-p", f"no:{name}")]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "timeout=1.5", *off, "test_them.py"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    # 1: tests failed; 3: an internal error ended the run
    assert done.returncode == 1 and "INTERNALERROR" not in out, f"status {done.returncode}\n{out}"
    assert "2 failed, 1 passed" in out, out  # test_after ran, after the slow report hook
    assert "TestTimedOut: Timeout (>1.5s) from pytest-timeout." in out, out
    assert "Flaky" not in out and "Inconsistent" not in out, out  # not shrunk
