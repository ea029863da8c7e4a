"""Which interpreter ``make`` builds the virtualenv with (tools/pick_python.py): the
system's when it is Python >= 3.11 with ``venv``, else ``python3`` on PATH."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools import pick_python


def test_a_python_that_can_make_a_virtualenv_is_usable() -> None:
    assert pick_python.usable(sys.executable)  # the suite's own: >= 3.11, with venv


def test_what_is_missing_or_too_old_or_not_python_is_not(tmp_path: Path) -> None:
    too_old = tmp_path / "python3.9"
    too_old.write_text("#!/bin/sh\nexit 1\n")  # as the check's sys.exit(True) ends
    too_old.chmod(0o755)
    not_runnable = tmp_path / "python3"
    not_runnable.write_text("not a program")
    for path in (tmp_path / "missing", too_old, not_runnable):
        assert not pick_python.usable(str(path))


def test_the_system_python_first_else_python3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pick_python, "SYSTEM", sys.executable)
    assert pick_python.pick() == sys.executable
    monkeypatch.setattr(pick_python, "SYSTEM", "/nonexistent/python3")
    assert pick_python.pick() == "python3"
