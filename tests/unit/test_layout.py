"""The layout the project promises (ARCHITECTURE.md): packages whose imports go the way
their docstrings say and the build enforces, each naming its modules; a small ground floor,
thin routes, and files and functions short enough to read."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.caps import MAX_FILE_LINES
from tests.support.procs import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = sorted(
    path.parent.relative_to(ROOT).as_posix()
    for folder in ("broadcaster", "worker")
    for path in (ROOT / folder).rglob("__init__.py")
)
"""Every package of the project (a folder with an ``__init__.py``)."""


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


def _docstring(package: str) -> str:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc, f"{package}/__init__.py has no docstring"
    return doc


def test_every_package_names_each_of_its_modules() -> None:
    """A package's docstring is its table of contents: each module and subpackage is named
    (````name````), so a newcomer reading it finds every file."""
    missing = []
    for package in PACKAGES:
        doc = _docstring(package)
        folder = ROOT / package
        parts = [p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")]
        parts += [p.parent.name for p in folder.glob("*/__init__.py")]
        missing += [f"{package}: {name}" for name in sorted(parts) if f"``{name}``" not in doc]
    assert not missing, "modules a package's docstring does not name:\n" + "\n".join(missing)


def _contracts() -> dict[str, set[str]]:
    """What each package may import, as the import contracts in pyproject.toml say: every
    package of the project but the ones its contract forbids."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [c for c in config["contracts"] if c.get("id") not in OTHER_RULES]
    sources = {c["source_modules"][0] for c in contracts}
    everyone = {*sources, *(m for c in contracts for m in c["forbidden_modules"])}
    allowed = {}
    for contract in contracts:
        assert contract["type"] == "forbidden" and len(contract["source_modules"]) == 1
        source = contract["source_modules"][0]
        allowed[source] = everyone - {source} - set(contract["forbidden_modules"])
    return allowed


EXTERNAL = "transport-only"
"""The contract on external packages: uvicorn and httptools for ``broadcaster.transport``
alone."""

OTHER_RULES = {EXTERNAL, "agents-apart", "agents-by-their-process", "frameworks-in-adapters"}
"""Contracts that are no package's "May import:" line: the external packages' and the
worker's agents' (``worker.agents``, kept apart from the rest of the worker)."""


def test_only_the_transport_imports_uvicorn_and_httptools(tmp_path: Path) -> None:
    """Every package but the transport is forbidden uvicorn and httptools, and the check
    can fail: the same tree with the HTTP room importing uvicorn."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (external,) = [c for c in config["contracts"] if c.get("id") == EXTERNAL]
    assert config["include_external_packages"] is True
    assert set(external["forbidden_modules"]) == {"uvicorn", "httptools"}
    top = {
        p.replace("/", ".")
        for p in PACKAGES
        if p == "worker" or (p.startswith("broadcaster/") and p.count("/") == 1)
    }
    assert set(external["source_modules"]) == top - {"broadcaster.transport"} | {"broadcaster.cli"}
    for name in ("broadcaster", "worker"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    errors = tmp_path / "broadcaster" / "http" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport uvicorn.config  # noqa\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0
    assert "broadcaster.http.errors -> uvicorn" in run.stdout


def _may_import(doc: str) -> set[str]:
    line = doc[doc.index("May import:") :].split("\n\n", maxsplit=1)[0]
    if "nothing else of the project" in line or "nothing of the project" in line:
        return set()
    return set(re.findall(r"``((?:broadcaster|worker)[\w.]*)``", line))


def test_every_package_says_what_it_may_import_and_the_build_holds_it() -> None:
    """Each top-level package's "May import:" line is its import contract, word for word:
    a package added without a contract, or a line that drifts from it, fails here."""
    contracts = _contracts()
    for package in PACKAGES:
        assert "May import:" in _docstring(package), f"{package} has no 'May import:' line"
    top = [
        p for p in PACKAGES if p == "worker" or (p.startswith("broadcaster/") and p.count("/") == 1)
    ]
    for package in top:
        name = package.replace("/", ".")
        assert name in contracts, f"{name} has no import contract in pyproject.toml"
        assert _may_import(_docstring(package)) == contracts[name], (
            f"{package}/__init__.py's 'May import:' line says "
            f"{sorted(_may_import(_docstring(package)))}; its contract allows "
            f"{sorted(contracts[name])}"
        )


def test_the_may_import_check_can_fail() -> None:
    doc = "Owns things.\n\nMay import: ``broadcaster.core`` and\n``broadcaster.fanout``.\n"
    assert _may_import(doc) == {"broadcaster.core", "broadcaster.fanout"}
    assert _may_import("May import: nothing else of the project.") == set()
    assert _contracts()["broadcaster.core"] == set()
    assert "broadcaster.fanout" in _contracts()["broadcaster.durable"]


MAX_CORE_MODULES = 18
MAX_ROUTE_LINES = 400
ROUTES = ROOT / "broadcaster" / "http" / "routes"


def test_the_ground_floor_stays_small_and_files_stay_readable() -> None:
    core = [p for p in (ROOT / "broadcaster" / "core").glob("*.py") if p.stem != "__init__"]
    assert len(core) <= MAX_CORE_MODULES, sorted(p.stem for p in core)
    too_long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for folder in ("broadcaster", "worker")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(path.read_text().splitlines()))
        > (MAX_ROUTE_LINES if path.parent == ROUTES else MAX_FILE_LINES)
    ]
    assert not too_long, "files over their limit:\n" + "\n".join(too_long)


def test_no_route_module_imports_another() -> None:
    """What two routes share lives in ``broadcaster.http`` or in a capability."""
    crossing = []
    for path in sorted(ROUTES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "broadcaster.http.routes"
            ):
                crossing.append(f"{path.name} imports {node.module}")
    assert not crossing, crossing


VIEWER_READS = {
    *("last-event-id", "authorization", "x-forwarded-for", "forwarded", "x-reset-step"),
    *("last_event_id", "token", "presence", "compact", "caught_up", "reset_step"),
}
"""The headers and query parameters of a viewer's request: ``viewers/ask.py`` reads them,
once, for every route and for the parser's path alike (``ViewerAsk``)."""


def _reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Where ``tree`` reads one of ``VIEWER_READS`` by name: ``x.get("name")``,
    ``x.getlist("name")``, ``x["name"]`` or ``"name" in x``."""
    found = []
    for node in ast.walk(tree):
        named: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "getlist") and node.args:
                named = node.args[0]
        elif isinstance(node, ast.Subscript):
            named = node.slice
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            named = node.left
        if isinstance(named, ast.Constant) and str(named.value).lower() in VIEWER_READS:
            found.append((node.lineno, str(named.value)))
    return found


def test_no_route_module_reads_a_viewers_headers() -> None:
    """A route hands its request to ``viewers.ask`` (``from_request``, ``resume_of``) and
    reads none of what a viewer's request carries itself, nor the scope's raw headers:
    so the route's way and the parser's read a request alike."""
    raw = []
    for path in sorted(ROUTES.glob("*.py")):
        tree = ast.parse(path.read_text())
        raw += [f"{path.name}:{line} reads {name!r}" for line, name in _reads(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in ("headers", "raw_headers"):
                raw.append(f"{path.name}:{node.lineno} reads the scope's headers")
    assert not raw, raw


def test_the_raw_header_check_can_fail() -> None:
    code = (
        "def route(request, q):\n"
        "    a = request.headers.get('Last-Event-ID')\n"
        "    b = q.getlist('token'), request.query_params['presence']\n"
        "    c = 'authorization' in request.headers\n"
        "    d = {'last_event_id': 1}\n"  # an answer's field, not a read
    )
    found = sorted(_reads(ast.parse(code)))
    assert found == [(2, "Last-Event-ID"), (3, "presence"), (3, "token"), (4, "authorization")]


PER_PROCESS = {"settings", "metrics", "cli"}
"""Names each process or room has its own of, for the same job in each: its settings, its
Prometheus metrics, its command line. Route modules are named by their resource."""


def test_no_two_modules_share_a_name() -> None:
    seen: dict[str, list[str]] = {}
    for folder in ("broadcaster", "worker"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.stem in ("__init__", "__main__") or path.parent == ROUTES:
                continue
            seen.setdefault(path.stem, []).append(path.relative_to(ROOT).as_posix())
    shared = {n: p for n, p in seen.items() if len(p) > 1 and n not in PER_PROCESS}
    assert not shared, shared


def test_the_core_loads_no_client_and_no_web_framework() -> None:
    """The worker imports the core: importing any core module (or the top-level package,
    whose names load on first use) loads neither the Python client, nor an HTTP client,
    nor FastAPI."""
    modules = [f"broadcaster.core.{p.stem}" for p in (ROOT / "broadcaster/core").glob("*.py")]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r} + ['broadcaster']: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('httpx', 'httpx2', 'fastapi', 'starlette', 'anthropic', 'openai')"
        " or m.startswith(('broadcaster.clients', 'broadcaster.http'))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]", run.stdout


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


DOCS = [
    "README.md",
    "ARCHITECTURE.md",
    "CHANGELOG.md",
    *sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")),
]
YOUR_APP = {"app/api/chat/route.ts", "lib/broadcaster.ts"}
"""Paths of the reader's own application, in docs/ai-sdk.md's examples."""
PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.(?:py|lua|md|json|yml|yaml|conf|mjs|ts))\b")


def test_every_file_the_docs_name_exists() -> None:
    """A file moved or renamed without its docs fails here: every path the README,
    ARCHITECTURE.md and docs/ name is a file of the repository (from its root, or from
    the package or folder it is written relative to)."""
    bases = [ROOT, *(ROOT / b for b in ("broadcaster", "worker", "tests", "deploy", "docs"))]
    stale = []
    for doc in DOCS:
        path = ROOT / doc if (ROOT / doc).exists() else ROOT / "docs" / doc
        for named in PATH.findall(path.read_text()):
            if named not in YOUR_APP and not any((base / named).exists() for base in bases):
                stale.append(f"{doc}: {named}")
    assert not stale, "files the docs name that do not exist:\n" + "\n".join(stale)


def _tree() -> dict[str, set[str]]:
    """ARCHITECTURE.md's tree: each package (``name/``, nested by indentation) and the
    modules listed on its ``·`` line and the lines that continue it."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = text[text.index("## The tree") :].split("```")[1]
    tree: dict[str, set[str]] = {}
    path: list[str] = []
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        if stripped.startswith("·"):
            tree["/".join(path)] |= set(stripped[1:].split())
        elif not stripped.split()[0].endswith("/"):  # the modules' line, continued
            tree["/".join(path)] |= set(stripped.split())
        else:
            path = [*path[:depth], stripped.split()[0].rstrip("/")]
            tree["/".join(path)] = set()
    return tree


def test_the_architecture_tree_is_the_tree() -> None:
    """Every package of the code is in ARCHITECTURE.md's tree with exactly its modules."""
    tree = _tree()
    assert set(tree) == set(PACKAGES), (
        f"in the tree only: {sorted(set(tree) - set(PACKAGES))}; "
        f"in the code only: {sorted(set(PACKAGES) - set(tree))}"
    )
    for package, listed in tree.items():
        folder = ROOT / package
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "__main__"}
        assert listed == modules, (
            f"{package}: the tree lists {sorted(listed - modules)} that do not exist and "
            f"misses {sorted(modules - listed)}"
        )
