"""The code's prose (tools/prose.py): no measured figure in a comment or docstring of
``broadcaster/`` and ``worker/`` (figures go in docs/, with their machine and date)."""

from __future__ import annotations

from tests.support.procs import ROOT
from tools import prose

FOLDERS = ("broadcaster", "worker")


def test_no_measured_figure_in_the_codes_comments() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {sentence}"
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, sentence in prose.figures(path.read_text())
    ]
    assert not found, "measured figures in comments (move them to docs/):\n" + "\n".join(found)


PLANTED = '''"""A module.

Parsing took 80 ms on this machine."""

TIMEOUT = 3.0
"""Seconds a flush waits at most: up to 3 s, then it gives up."""


def f() -> None:
    # freeing them cold cost a fan-out 4-12% of its CPU
    x = 1  # a keepalive every 15 s, the protocol's default
    # with a base per 16 streams, 171 KB of ids,
    # ~1 ms apiece
    print(x)
    """Not a docstring, but prose: a scan took about 10 ms a tick."""
    # Redis times blocks out every 100 ms at the default hz, so even BLOCK 1 costs that.
    # jittered, plus up to 25 % of the delay
'''


def test_the_figure_check_can_fail() -> None:
    """Measured figures are found, in docstrings, comments and comment blocks across
    lines; limits and settings ("up to", "every", constants' values) are not."""
    found = prose.figures(PLANTED)
    assert [line for line, _ in found] == [1, 10, 12, 15], found
    assert "80 ms on this machine" in found[0][1]
    assert "4-12%" in found[1][1]
    assert "171 KB" in found[2][1] and "~1 ms" in found[2][1]
    assert "10 ms" in found[3][1]


def test_docstring_lines_are_counted_where_python_keeps_them() -> None:
    """A module's, a function's and an attribute's docstring count; other strings not."""
    assert prose.docstring_lines(PLANTED) == 3 + 1


def test_shares_and_ratios_in_words_are_found() -> None:
    assert prose.figures('"""Reading them one by one took twice as long."""\n')
    assert prose.figures("# per-connection dicts were a sixth of its CPU\n")
    assert not prose.figures('"""Twice as long apart while no other worker holds a job."""\n')
    assert not prose.figures('"""Seconds into the window (a third of ``duration``)."""\n')


MAX_DOCSTRING_LINES_PER_1000 = 175
"""A ratchet, not a target: docstring lines per 1,000 lines of code (ARCHITECTURE.md,
"Caps and the code's prose", has the figures). Lower it as the docstrings shrink."""


def test_docstrings_stay_terse() -> None:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    doc, total, per = prose.ratio(files)
    assert per <= MAX_DOCSTRING_LINES_PER_1000, (
        f"{doc} docstring lines in {total} lines of code: {per:.1f} per 1,000, over "
        f"{MAX_DOCSTRING_LINES_PER_1000}; say what and why in a few lines, and put the "
        "long story in ARCHITECTURE.md or docs/"
    )
