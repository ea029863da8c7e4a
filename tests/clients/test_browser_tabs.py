"""The demo's chat in two browser tabs on one chat, in headless Chromium: a turn started
in one tab shows up in the other, whose only way to hear of it is the chat's own stream
(``GET /v1/chat/{id}/events``); each submit carries an ``Idempotency-Key`` of its own,
and the tabs read the chat's history as a page (``?limit=``).

Two front-ends behind nginx (deploy/nginx.conf: a chat's streams go to one front-end, its
submits to either, so the turn a tab hears of may start on the other) and a worker with
the fake provider, each a real process of the test's own. tests/clients/browser/tabs.mjs
drives the two tabs. Needs Debian's chromium-headless-shell, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never
skips.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support import node_host
from tests.support.browser import (
    ARTIFACTS,
    BROWSER_DIR,
    missing_prerequisites,
    start_node_script,
    stop_browser_leftovers,
)
from tests.support.stacks import start_stack

SCRIPT = BROWSER_DIR / "tabs.mjs"


def test_a_turn_started_in_one_tab_shows_in_the_other(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    stack = start_stack(tmp_path, "tabs", {"WORKER_FAKE_DELAY_MS": "20"}, frontends=2, nginx=True)
    profile = tmp_path / "chromium-profile"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        node = start_node_script(
            SCRIPT, [stack.url, str(ARTIFACTS / "chat-tabs.png"), str(profile)]
        )
        code, out, err = node_host.finish(node, timeout=130)
        assert code == 0, f"tabs.mjs exited with {code}\n{err}\n{out}\n{stack.logs()}"
        result = json.loads(out.strip().splitlines()[-1])
        listed = httpx.get(f"{stack.url}/v1/chat/{result['chat_id']}/messages").json()
    finally:
        stop_browser_leftovers(profile)
        stack.stop()
    texts = [m["parts"][0]["text"] for m in listed["messages"] if m["role"] == "user"]
    assert texts == ["Sent from the first tab", "And one from the second tab"]
    for tab in result["tabs"]:
        for pane in tab:  # every pane of both tabs shows both turns, as the server has them
            assert pane["error"] == "" and pane["outcome"] == "finish", pane
            assert [m["role"] for m in pane["messages"]] == ["user", "assistant"] * 2
            assert [m["text"] for m in pane["messages"][::2]] == texts
            assert all(m["text"] for m in pane["messages"][1::2]), pane
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert [p["tab"] for p in posts] == [1, 2]  # one submit per turn, from its own tab
    keys = [p["idempotency_key"] for p in posts]
    assert all(keys) and len(set(keys)) == 2, posts
    gets = [r for r in result["requests"] if r["method"] == "GET"]
    assert gets and all("limit=" in r["query"] for r in gets), gets
