"""The layout the project promises (ARCHITECTURE.md): rooms whose imports go one way,
each saying what it owns and what it may import, and functions short enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
ROOMS = [
    "broadcaster/core",
    "broadcaster/fanout",
    "broadcaster/http",
    "broadcaster/clients",
    "broadcaster/bench",
    "broadcaster/webhooks",
    "worker",
    "worker/providers",
]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: pip install -e '.[dev]'"
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
    )


def test_imports_go_one_way() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_a_lower_room_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    """The check can fail: the same tree with the core importing the HTTP room."""
    for name in ("broadcaster", "worker"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    keys = tmp_path / "broadcaster" / "core" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport broadcaster.http.app  # noqa\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0
    assert "broadcaster.core.keys -> broadcaster.http.app" in run.stdout


def test_every_room_says_what_it_owns_and_may_import() -> None:
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text()))
        assert doc, f"{room}/__init__.py has no docstring"
        assert "May import" in doc, f"{room}/__init__.py does not say what it may import"


MAX_FUNCTION_LINES = 60
SHORT_FUNCTION_FOLDERS = ["broadcaster", "worker"]


def test_no_function_is_longer_than_a_screen() -> None:
    too_long = []
    for folder in SHORT_FUNCTION_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        too_long.append(f"{where} {node.name}: {lines} lines")
    assert not too_long, f"longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)
