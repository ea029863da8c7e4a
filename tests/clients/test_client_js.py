"""The TypeScript client package, ``@llm-stream-broadcaster/client`` (clients/js): it
builds (esbuild, then tsc for the types) within its size limit, its types check against
the AI SDK's ``ChatTransport`` of ai 7 and ai 6, its vitest unit tests pass (the SSE
parser against eventsource-parser, reconnection, backoff, ids, the transport under the
SDK's own Chat), and it installs from the checkout into an app with nothing from a
registry. Needs node >= 20 and clients/js's npm packages (``make test-deps``); without
them the tests fail and say what to install.

The node tools that need nothing of each other or of the build (the type check and
typedoc, in one process: clients/js/check.mjs; the unit tests) start together when the
module's first test does, each awaited by its tests: they run side by side with each
other and with the build. The build is the one that made dist/ when another module's
test built it first in this run (``client_js.build`` keeps what it printed)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import client_js
from tests.support.client_js import Background

SIZE_LINE = re.compile(r"(\d+) minified and gzipped \(limit (\d+)\)")
TOOLS = {
    # The type check and the reference page (typedoc) in one node process, their programs
    # sharing the files both read: clients/js/check.mjs.
    "check": ["node", "check.mjs", "{out}/check"],
    "vitest": [
        "node",
        "node_modules/vitest/vitest.mjs",
        "run",
        "--reporter=json",
        "--outputFile={out}/v.json",
    ],
}
"""The node tools' runs, by name; ``{out}`` is the runs' folder."""
USES = {
    "test_the_types_check_against_both_ai_sdk_versions": "check",
    "test_the_unit_tests_pass": "vitest",
    "test_the_reference_page_is_typedoc_of_the_types": "check",
}
"""The run each test reads."""
TYPES_FAILED, DOCS_FAILED = 1, 2
"""check.mjs's exit status: its bits, one for each of its two jobs."""


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Background]]:
    """The tool runs read by this module's tests that are to run, started together."""
    missing = client_js.missing_prerequisites()
    if missing:
        pytest.fail("the client package's tests need:\n  " + "\n  ".join(missing), pytrace=False)
    out = tmp_path_factory.mktemp("client-js-tools")
    wanted = {
        USES[item.name]
        for item in request.session.items
        if getattr(item, "module", None) is request.module and item.name in USES
    }
    started: dict[str, Background] = {}
    try:
        for name, args in TOOLS.items():
            if name in wanted:
                command = [a.format(out=out) for a in args]
                started[name] = Background(name, command, out, timeout=300)
        yield started
    finally:
        for run in started.values():
            run.stop()


@pytest.fixture(autouse=True)
def _prerequisites(runs: dict[str, Background]) -> None:
    """Fails without node or the packages (``runs`` says so), else starts the tools."""


def _result(
    runs: dict[str, Background], request: pytest.FixtureRequest
) -> subprocess.CompletedProcess[str]:
    return runs[USES[request.node.name]].result()


def test_the_build_measures_the_package_and_holds_it_to_8_kb() -> None:
    dist = client_js.PACKAGE / "dist"
    printed = client_js.build()
    found = SIZE_LINE.search(printed)
    assert found, printed
    size, limit = int(found.group(1)), int(found.group(2))
    assert limit == 8192 and 0 < size <= limit, printed
    assert (dist / "index.js").is_file() and (dist / "index.d.ts").is_file()
    assert (
        "export declare class BroadcasterChatTransport"
        in (dist / "chat" / "transport.d.ts").read_text()
    )


def test_the_types_check_against_both_ai_sdk_versions(
    runs: dict[str, Background], request: pytest.FixtureRequest
) -> None:
    """``npm run typecheck``'s program (tsconfig.test.json), as check.mjs runs it."""
    run = _result(runs, request)
    errors = Path(run.args[-1]) / "types.txt"
    assert errors.is_file(), f"the type check did not run:\n{run.stdout}\n{run.stderr}"
    assert errors.read_text() == "", errors.read_text()
    assert run.returncode & ~DOCS_FAILED == 0, run.stdout + run.stderr


def test_the_unit_tests_pass(runs: dict[str, Background], request: pytest.FixtureRequest) -> None:
    run = _result(runs, request)
    report = Path(run.args[-1].removeprefix("--outputFile="))
    assert report.is_file(), f"vitest wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(report.read_text())
    failed = [
        f"{t['fullName']}: {t['failureMessages']}"
        for f in result["testResults"]
        for t in f["assertionResults"]
        if t["status"] != "passed"
    ]
    assert run.returncode == 0 and not failed, "\n".join(failed) or run.stderr[-3000:]
    assert result["numPassedTests"] >= 30, result["numPassedTests"]


def test_it_installs_from_the_checkout(tmp_path: Path) -> None:
    """``npm install ./clients/js`` into an app: nothing fetched (no runtime dependency,
    ``ai`` an optional peer), and the app imports it by name."""
    client_js.build()
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    install = subprocess.run(
        ["npm", "install", "--offline", "--no-audit", "--no-fund", str(client_js.PACKAGE)],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    script = (
        "const m = await import('@llm-stream-broadcaster/client');"
        "console.log(JSON.stringify(Object.keys(m).sort()))"
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    names = json.loads(run.stdout)
    for name in ("BroadcasterChatTransport", "followStream", "followEvents", "inputHash"):
        assert name in names, names
    manifest = json.loads((app / "package.json").read_text())
    assert list(manifest["dependencies"]) == ["@llm-stream-broadcaster/client"]


def test_the_reference_page_is_typedoc_of_the_types(
    runs: dict[str, Background], request: pytest.FixtureRequest
) -> None:
    """docs/reference/client-js/ is what ``npm run docs`` (typedoc) makes of the exported
    types: run it again after changing them."""
    run = _result(runs, request)
    out = Path(run.args[-1]) / "reference"
    assert run.returncode & ~TYPES_FAILED == 0, run.stdout + run.stderr
    assert (out / "index.md").is_file(), f"typedoc made no page:\n{run.stdout}\n{run.stderr}"
    committed = client_js.PACKAGE.parent.parent / "docs" / "reference" / "client-js" / "index.md"
    assert (out / "index.md").read_text() == committed.read_text(), "run npm run docs in clients/js"
