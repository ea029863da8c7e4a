"""Which interpreter ``make`` builds the virtualenv with (tools/pick_python.py): the
faster of ``python3`` on PATH and the system's, ``python3`` keeping its place within 5 %."""

from __future__ import annotations

import pytest

from tools import pick_python


def timed(monkeypatch: pytest.MonkeyPatch, found: list[str], times: dict[str, list[float]]) -> None:
    """``found`` usable, each timing its loop at ``times[path]`` in turn."""
    monkeypatch.setattr(pick_python, "candidates", lambda: found)
    left = {path: list(values) for path, values in times.items()}
    monkeypatch.setattr(pick_python, "seconds", lambda path: left[path].pop(0))


def test_a_clearly_faster_system_python_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    timed(
        monkeypatch,
        ["/pyenv/python3", "/usr/bin/python3"],
        {"/pyenv/python3": [2.6, 2.4, 2.5], "/usr/bin/python3": [1.9, 2.3, 1.8]},
    )
    assert pick_python.pick() == "/usr/bin/python3"


def test_within_the_margin_python3_on_path_keeps_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the best of each: 2.0 against 1.95, under 5 % apart
    timed(
        monkeypatch,
        ["/pyenv/python3", "/usr/bin/python3"],
        {"/pyenv/python3": [2.2, 2.0, 2.1], "/usr/bin/python3": [1.95, 2.3, 2.2]},
    )
    assert pick_python.pick() == "/pyenv/python3"


def test_one_candidate_is_taken_untimed_and_none_leaves_python3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timed(monkeypatch, ["/usr/bin/python3"], {})
    assert pick_python.pick() == "/usr/bin/python3"
    timed(monkeypatch, [], {})
    assert pick_python.pick() == "python3"
