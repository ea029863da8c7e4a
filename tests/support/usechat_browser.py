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

import httpx
import pytest

from tests.support import client_js
from tests.support.browser import missing_prerequisites
from tests.support.node_script import Script
from tests.support.procs import ROOT
from tests.support.stacks import Stack, start_stack

USECHAT = ROOT / "tests" / "clients" / "usechat"


def require(*more: str) -> None:
    """Fail the test, saying what to install, when Chromium, Node or the npm packages of
    tests/clients/usechat are missing (``more``: what else the caller found missing)."""
    missing = [*missing_prerequisites(), *more]
    if not (USECHAT / "node_modules" / "@ai-sdk" / "react").is_dir():
        missing.append("tests/clients/usechat/node_modules: npm ci --prefix tests/clients/usechat")
    if missing:
        pytest.fail("these tests need:\n  " + "\n  ".join(missing), pytrace=False)


@contextlib.contextmanager
def stack(
    base: Path, name: str, worker_env: dict[str, str], frontend_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """What the pages talk to: two front-ends of one Redis behind deploy/nginx.conf and a
    worker, with the client package built first; stopped on leaving."""
    require(*client_js.missing_prerequisites())
    client_js.build()
    s = start_stack(base, name, worker_env, frontend_env=frontend_env, frontends=2, nginx=True)
    try:
        yield s
    finally:
        s.stop()


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

    def open(self, tab: str, chat: str, *, tokens: bool = False) -> None:
        """The page on ``chat``; with ``tokens``, its getToken asks the backend that
        ``serve_tokens`` set up for a token of the chat."""
        token = f"&token=/usechat/token/{chat}" if tokens else ""
        self.do("open", tab=tab, path=f"/usechat/{self.page}.html?chat={chat}&api=/v1/chat{token}")

    def serve_tokens(self, key: str, ttl: int) -> None:
        """From now on, the pages' backend mints a new chat token each time it is asked,
        with the front-end's token route and ``key``, living ``ttl`` seconds."""
        self.do("tokens", key=key, ttl=ttl)

    def value(self, tab: str, js: str) -> Any:
        return self.do("eval", tab=tab, js=js)["value"]


def latest_generation(url: str, chat: str, key: str | None = None) -> dict[str, Any]:
    """The chat's latest generation as the API at ``url`` reports it (with ``key``, an API
    key, where authorization is on: a reading route takes a viewer token it mints)."""
    auth = {"authorization": f"Bearer {key}"} if key else {}
    got = httpx.get(f"{url}/v1/chat/{chat}/messages", headers=auth, timeout=10).json()
    generation = got["generation_id"]
    if key:
        minted = httpx.post(f"{url}/v1/streams/{generation}/tokens", headers=auth, timeout=10)
        auth = {"authorization": f"Bearer {minted.json()['viewer_token']}"}
    status: dict[str, Any] = httpx.get(
        f"{url}/v1/generations/{generation}", headers=auth, timeout=10
    ).json()
    return status


def answered(state: dict[str, Any], url: str, chat: str, key: str | None = None) -> dict[str, Any]:
    """The tab's last message is the chat's latest answer, whole, its text part once, and
    the tab shows no error; the answer's generation."""
    generation = latest_generation(url, chat, key)
    last = state["messages"][-1]
    assert [m["role"] for m in state["messages"]][-2:] == ["user", "assistant"], state
    assert last["role"] == "assistant" and last["texts"] == 1, state
    assert last["text"] == generation["text"], (state, generation)
    assert state["error"] == "", state
    return generation


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
