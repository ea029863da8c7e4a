"""The code's prose, measured: measured figures left in comments and docstrings (they
belong in docs/, which names the machine and the date), and docstring lines per 1,000
lines of code. ``python -m tools.prose [FOLDER ...]`` prints both; tests/unit/test_text.py
holds the code to them."""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

_NUMBER = r"~?\d[\d,]*(?:\.\d+)?"
FIGURE = re.compile(
    rf"(?<![\w.])(?P<bound>(?:up to|at most|every|default|within|after|over|under)\s+)?"
    rf"{_NUMBER}(?:\s?(?:-|\u2013|to)\s?{_NUMBER})?\s?"
    "(?:ms|\u00b5s|us|ns|s|seconds|bytes|KB|KiB|kB|MB|MiB|GB|GiB|%|\u00d7)(?!\\w)",
)
"""A time, size, share or ratio. One after a bound ("up to 3 s", "every 100 ms") is a
limit or a setting, not something measured."""

RATIO = re.compile(r"\b(?:twice|three times|half) as (?:long|much|fast|many)\b")
"""A ratio in words ("twice as long"): a figure when something took or cost it."""

SHARE = re.compile(
    r"\ba (?:third|quarter|fifth|sixth|tenth) of (?:its|the|an?) [\w' ]*(?:CPU|time|memory)\b"
)
"""A share of a cost in words ("a sixth of its CPU"): always a figure."""

MEASURED = re.compile(
    r"\b(?:took|takes|measured|profiled|on this machine|here|about|around|roughly|costs?"
    r"|spent|stall(?:s|ed)?|waited|CPU)\b|~\d",
    re.IGNORECASE,
)
"""Words that say a figure was seen on a machine rather than chosen."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`])")


def _prose(text: str) -> list[tuple[int, str]]:
    """Each block of consecutive comment lines (a comment after code is a block of its
    own), and each string statement (docstrings), as one line of text with the line it
    starts on."""
    blocks: list[tuple[int, str]] = []
    lines: list[str] = []
    start = last = -2
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.COMMENT:
            continue
        alone = tok.line.lstrip().startswith("#")  # not after code on its line
        if lines and not (alone and tok.start[0] == last + 1):
            blocks.append((start, " ".join(lines)))
            lines = []
        if not lines:
            start = tok.start[0]
        lines.append(tok.string.lstrip("#").strip())
        last = tok.start[0] if alone else -2
    if lines:
        blocks.append((start, " ".join(lines)))
    for node in ast.walk(ast.parse(text)):
        value = getattr(node.value, "value", None) if isinstance(node, ast.Expr) else None
        if isinstance(value, str):
            blocks.append((node.lineno, " ".join(value.split())))
    return blocks


def figures(text: str) -> list[tuple[int, str]]:
    """The sentences of ``text``'s comments and docstrings that hold a measured figure,
    with the line their block starts on."""
    found = []
    for line, block in _prose(text):
        for sentence in _SENTENCE.split(block):
            unbound = [m for m in FIGURE.finditer(sentence) if not m["bound"]]
            seen = unbound or RATIO.search(sentence)
            if (seen and MEASURED.search(sentence)) or SHARE.search(sentence):
                found.append((line, sentence))
    return sorted(found)


def docstring_lines(text: str) -> int:
    """The lines of ``text``'s docstrings: a module's, a class's or a function's, and
    the string that follows an assignment (an attribute's)."""
    count = 0
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        owner = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        for before, stmt in zip([None, *body[:-1]], body, strict=True):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                continue
            if isinstance(stmt.value.value, str) and (
                (before is None and owner) or isinstance(before, ast.Assign | ast.AnnAssign)
            ):
                count += (stmt.end_lineno or stmt.lineno) - stmt.lineno + 1
    return count


def ratio(files: list[Path]) -> tuple[int, int, float]:
    """Docstring lines, all lines, and docstring lines per 1,000 lines of ``files``."""
    doc = total = 0
    for path in files:
        text = path.read_text()
        doc += docstring_lines(text)
        total += len(text.splitlines())
    return doc, total, 1000 * doc / max(total, 1)


def main(folders: list[str]) -> None:
    files = [p for folder in folders for p in sorted(Path(folder).rglob("*.py"))]
    for path in files:
        for line, sentence in figures(path.read_text()):
            print(f"{path}:{line}: {sentence}")
    doc, total, per = ratio(files)
    print(f"{doc} docstring lines in {total} lines: {per:.1f} per 1,000")


if __name__ == "__main__":
    main(sys.argv[1:] or ["broadcaster", "worker"])
