"""The suite's CPU log (tests/support/cpu_log.py, docs/testing.md): a pytest run with
``BROADCASTER_TEST_CPU_LOG`` set logs each test's own CPU and its started processes', and
the summary ranks the modules by the two together."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

BUSY_TESTS = """
import subprocess, sys, time

def test_busy_here():
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass

def test_busy_in_a_child():
    code = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
"""


def test_each_test_is_logged_with_its_own_and_its_childrens_cpu(tmp_path: Path) -> None:
    tests = tmp_path / "test_busy.py"
    tests.write_text(BUSY_TESTS)
    log = tmp_path / "cpu.log"
    # Only the plugin under test: the suite's others (hypothesis, schemathesis, xdist ...)
    # would cost seconds of imports and log nothing.
    env = {
        **os.environ,
        "BROADCASTER_TEST_CPU_LOG": str(log),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    args = ["-q", "-p", "tests.support.cpu_log", "--rootdir", str(tmp_path)]
    run = subprocess.run(  # this Python, fixed arguments
        [sys.executable, "-m", "pytest", *args, "-c", os.devnull, str(tests)],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split("\t")[0].rsplit("::", 1)[1]: line for line in log.read_text().splitlines()}
    assert set(lines) == {"test_busy_here", "test_busy_in_a_child"}
    _, own, children, wall, process, first_end = lines["test_busy_here"].split("\t")
    assert float(own) >= 0.3 and float(children) < 0.1 and float(wall) >= 0.3
    assert process == "main"  # one process, no xdist
    _, own, children, wall, _, second_end = lines["test_busy_in_a_child"].split("\t")
    assert float(children) >= 0.3 and float(own) < float(children)
    # the second ended at least its own wall time after the first (to the log's millisecond)
    assert float(second_end) - float(first_end) >= float(wall) - 0.002 >= 0.29

    summary = subprocess.run(  # this Python, fixed arguments
        [sys.executable, "-m", "tests.support.cpu_log", str(log)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert summary.startswith("CPU "), summary
    *_, module, heading, timeline = summary.splitlines()
    assert module.endswith("test_busy.py"), summary
    # the one process: its tests ran about 0.6 s, from the first test's start
    assert heading.startswith("process"), summary
    process, busy, start, _, end, last = timeline.split(maxsplit=5)
    assert (process, start) == ("main", "0") and last == f"test_busy.py ({end})", summary
    assert int(end) > 0 and int(busy) <= int(end), summary
