"""A folder for one run of the suite, shared by its test processes (pytest-xdist): made by
the controller as it starts the first of them, named to each in its worker input, removed
with what it holds once the run is over. tests/conftest.py keeps its locks there (the
tests that run alone), tests/support/watchdog.py the tests that ended their process."""

from __future__ import annotations

import shutil
import tempfile

import pytest

KEY = "broadcaster_run_dir"
"""The worker input that names the folder."""


def made(config: pytest.Config) -> str:
    """(The controller.) The run's folder, made on the first call."""
    found: str | None = getattr(config, "_broadcaster_run_dir", None)
    if found is None:
        found = tempfile.mkdtemp(prefix="broadcaster-test-run-")
        config._broadcaster_run_dir = found  # type: ignore[attr-defined]
    return found


def of(config: pytest.Config) -> str | None:
    """(A test process.) The run's folder; None with one process (``-n 0``)."""
    found: str | None = getattr(config, "workerinput", {}).get(KEY)
    return found


def remove(config: pytest.Config) -> None:
    """(The controller, once its processes have ended.) The folder and what it holds."""
    found = getattr(config, "_broadcaster_run_dir", None)
    if found is not None:
        shutil.rmtree(found, ignore_errors=True)
