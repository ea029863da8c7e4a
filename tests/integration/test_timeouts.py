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
    time.sleep(0.01)
"""


def run_pytest(folder: Path, *args: str) -> str:
    folder.joinpath("conftest.py").write_text(SLOW_REPORT_HOOK)
    folder.joinpath("test_them.py").write_text(TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "timeout=1.5", *args],
        cwd=folder,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    # 1: tests failed; 3: an internal error ended the run
    assert done.returncode == 1, f"status {done.returncode}\n{out}"
    return out


def test_an_alarm_in_a_report_hook_ends_no_run(tmp_path: Path) -> None:
    tests = ["test_them.py::test_failing", "test_them.py::test_after"]
    out = run_pytest(tmp_path, "-q", "-n", "0", *tests)
    assert "INTERNALERROR" not in out, out
    assert "1 failed, 1 passed" in out, out


def test_a_property_test_past_its_timeout_fails_once_unshrunk(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "-q", "-n", "0", "test_them.py::test_property_past_its_timeout")
    assert "TestTimedOut: Timeout (>1.5s) from pytest-timeout." in out, out
    assert "Flaky" not in out and "Inconsistent" not in out, out
    assert "1 failed" in out, out
