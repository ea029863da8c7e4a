"""The short and the full form of the suite's longest tests (docs/testing.md, "Short and
long forms"): ``make test`` runs each of them at a budget that still shows what it checks,
and ``make test-long`` (``BROADCASTER_TEST_LONG=1``) runs the same tests, marked ``long``,
at their full budget."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("BROADCASTER_TEST_LONG", "") == "1"
"""The full budgets (``make test-long``)."""

mark = pytest.mark.long
"""A test with a short and a full form: ``make test-long`` selects it."""


def budget(short: int, full: int) -> int:
    """``full`` under ``make test-long``, else ``short``."""
    return full if LONG else short
