"""One Chromium for a test module, on a page of tests/clients/usechat bundled by its
build.mjs and served at the front-end's origin by tests/clients/usechat/browser.mjs,
driven a command at a time (a JSON line each way)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import missing_prerequisites
from tests.support.node_script import Script
from tests.support.procs import ROOT

USECHAT = ROOT / "tests" / "clients" / "usechat"


def require(*more: str) -> None:
    """Fail the test, saying what to install, when Chromium, Node or the npm packages of
    tests/clients/usechat are missing (``more``: what else the caller found missing)."""
    missing = [*missing_prerequisites(), *more]
    if not (USECHAT / "node_modules" / "@ai-sdk" / "react").is_dir():
        missing.append("tests/clients/usechat/node_modules: npm ci --prefix tests/clients/usechat")
    if missing:
        pytest.fail("these tests need:\n  " + "\n  ".join(missing), pytrace=False)


class Browser:
    """The module's Chromium: one command, one answer."""

    def __init__(self, script: Script, page: str) -> None:
        self.script = script
        self.page = page

    def do(self, op: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        self.script.send(json.dumps({"op": op, **args}))
        answer = self.script.next_json(timeout)
        assert answer["ok"], f"{op} {args}: {answer}"
        return answer

    def wait(self, tab: str, until: str, ms: int = 40_000) -> dict[str, Any]:
        answer = self.do("wait", ms / 1000 + 10, tab=tab, until=until, ms=ms)
        state: dict[str, Any] = answer["state"]
        return state

    def open(self, tab: str, chat: str) -> None:
        self.do("open", tab=tab, path=f"/usechat/{self.page}.html?chat={chat}&api=/v1/chat")

    def value(self, tab: str, js: str) -> Any:
        return self.do("eval", tab=tab, js=js)["value"]


@contextlib.contextmanager
def browser(base_url: str, app: Path, page: str = "index") -> Iterator[Browser]:
    """``page`` (``index``: app.jsx; else ``<page>.jsx``) built into ``app``, and the
    browser on it while inside, quit and stopped by pid on leaving."""
    args = ["node", "build.mjs", str(app), *([] if page == "index" else [page])]
    built = subprocess.run(args, cwd=USECHAT, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    script = Script(
        ["node", str(USECHAT / "browser.mjs"), base_url, str(app)], app / "browser.stderr"
    )
    try:
        assert script.next_json(60)["ready"]
        yield Browser(script, page)
    finally:
        script.send(json.dumps({"op": "quit"}))
        script.stop()
