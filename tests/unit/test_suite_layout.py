"""The test suite's own layout: its modules are held to the project's cap on lines
(``MAX_FILE_LINES``, support modules included), and no test module imports another:
what two test modules share lives in ``tests/support``, a module per idea. Collecting
the suite imports no provider SDK and no agent framework: every test process collects
every module and would pay seconds of CPU for them (``tests/support/collected_imports.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import collected_imports
from tests.support.caps import MAX_FILE_LINES
from tests.support.procs import ROOT

TESTS = ROOT / "tests"


def _python_files() -> list[Path]:
    return sorted(
        p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts and ".venv" not in p.parts
    )


def _over_the_cap(files: list[Path], root: Path = ROOT) -> list[str]:
    return [
        f"{path}: {n} lines"
        for path in files
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]


def _test_module_imports(path: Path) -> list[str]:
    """The test modules (``tests.<folder>.test_*``) that ``path`` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        found += [n for n in names if n.startswith("tests.") and n.split(".")[-1][:5] == "test_"]
    return found


def test_test_modules_stay_under_the_projects_cap() -> None:
    too_long = _over_the_cap(_python_files())
    assert not too_long, "test files over the cap (split them by theme):\n" + "\n".join(too_long)


def test_the_cap_check_can_fail(tmp_path: Path) -> None:
    long = tmp_path / "test_long.py"
    long.write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    short = tmp_path / "test_short.py"
    short.write_text("x = 1\n" * MAX_FILE_LINES)
    assert [line.split(":")[0] for line in _over_the_cap([long, short], tmp_path)] == [str(long)]


def test_no_test_module_imports_another() -> None:
    crossing = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _python_files()
        for module in _test_module_imports(path)
    ]
    assert not crossing, "move what they share to tests/support:\n" + "\n".join(crossing)


def test_the_import_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "test_b.py"
    path.write_text(
        "import tests.clients.test_a\n"
        "from tests.integration.test_hub import until\n"
        "from tests.support.polling import poll\n"
    )
    assert _test_module_imports(path) == ["tests.clients.test_a", "tests.integration.test_hub"]


def test_collecting_the_suite_imports_no_provider_sdk_and_no_agent_framework(
    pytestconfig: pytest.Config,
) -> None:
    """In this test process's collection (the whole suite's in ``make test``)."""
    found = pytestconfig.stash.get(collected_imports.KEY, None)
    assert found is not None, "the plugin recorded nothing: is it loaded (tests/conftest.py)?"
    heavy = [f"{module}: {', '.join(names)}" for module, names in sorted(found.items())]
    assert not heavy, "import these where a test runs, not at the module's top:\n" + "\n".join(
        heavy
    )


def test_the_collection_check_sees_an_sdk() -> None:
    assert collected_imports.loaded({"json", "openai", "openai.types", "agents"}) == {
        "openai",
        "agents",
    }
    assert collected_imports.loaded({"json", "openai_stream", "worker.providers.openai"}) == set()
