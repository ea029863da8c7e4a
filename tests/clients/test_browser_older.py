"""The demo's chat tab pages a long chat's history, in headless Chromium: the newest page
first, older pages on demand, every message once and in order.

A chat of 112 messages is seeded through the API (``PUT /v1/chat/{id}/messages``) on a
real front-end (no worker: nothing is answered), and tests/clients/browser/older.mjs opens
its address. Both panes must show the newest 50 messages; pane 1 then loads the older
pages a click at a time, pane 2 with a double click first: after each page each pane shows
the newest messages of the chat, whole, in the server's order, none twice, and at the end
all of them, with no button left. Each older page is read once, with the cursor the
server gave (``older``). Then a race: the chat opened again, pane 1's next older page is
held back while pane 2 begins a turn (pane 1 reads the newest page, one message on);
once it comes, pane 1 asks again from its new first message, and shows the newest 100
messages with none missing between the pages. The browser, node and
tests/clients/browser's npm packages are needed: missing, the test fails and names them
(never a skip).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support import browser
from tests.support.stacks import start_stack

TURNS = 56  # 112 messages: pages of 50, 50 and 12
PAGE = 50  # the page's history page (web/chat/src/index.mjs)


def _message(role: str, mid: str, words: str) -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": words}]}


def _seed(url: str) -> tuple[str, list[dict[str, Any]]]:
    chat = "older-" + secrets.token_hex(6)
    history: list[dict[str, Any]] = []
    for i in range(TURNS):
        history += [
            _message("user", f"u{i}", f"question {i}"),
            _message("assistant", f"a{i}", f"answer {i}"),
        ]
    made = httpx.put(f"{url}/v1/chat/{chat}/messages", json={"messages": history}, timeout=10)
    assert made.status_code == 201, made.text
    return chat, history


def _cursors(url: str, chat: str) -> list[str]:
    """The ``older`` cursors of the chat's pages, newest page first."""
    cursors: list[str] = []
    while True:
        query = {"limit": PAGE} | ({"before": cursors[-1]} if cursors else {})
        page = httpx.get(f"{url}/v1/chat/{chat}/messages", params=query, timeout=10).json()
        older = page["older"]
        if older is None:
            return cursors
        cursors.append(older)


def _shown(pane: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(m["id"], m["role"], m["text"]) for m in pane["messages"]]


def test_the_chat_tab_loads_older_pages_in_order_each_message_once(tmp_path: Path) -> None:
    if missing := browser.missing_prerequisites():
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    stack = start_stack(tmp_path, "older", None)
    profile = tmp_path / "chromium-profile"
    browser.ARTIFACTS.mkdir(exist_ok=True)
    picture = browser.ARTIFACTS / "chat-older.png"
    try:
        chat, history = _seed(stack.url)
        whole = httpx.get(f"{stack.url}/v1/chat/{chat}/messages", timeout=10).json()["messages"]
        cursors = _cursors(stack.url, chat)
        code, out, err = browser.run_node_script(
            browser.BROWSER_DIR / "older.mjs",
            [stack.url, str(picture), str(profile)],
            130,
            env={"CHAT_ID": chat},
        )
        assert code == 0, f"older.mjs exited with {code}\n{err}\n{out}\n{stack.logs()}"
        after = httpx.get(f"{stack.url}/v1/chat/{chat}/messages", timeout=10).json()["messages"]
    finally:
        browser.stop_browser_leftovers(profile)
        stack.stop()
    result = json.loads(out.strip().splitlines()[-1])
    assert whole == history and len(cursors) == 2, (whole, cursors)
    chat_order = [(m["id"], m["role"], m["parts"][0]["text"]) for m in history]
    newest = chat_order[-PAGE:]

    first, *pane_1_pages, last = result["steps"]
    # Opened: both panes show the newest page, and a button for the older ones.
    for pane in first:
        assert pane["error"] == "" and pane["older_button"], pane
        assert _shown(pane) == newest, pane
    # Pane 1, a page a click: the newest 100 messages, then all of them, no button left;
    # pane 2 still shows the newest page.
    assert len(pane_1_pages) == 2, pane_1_pages
    for shown_count, (pane_1, pane_2) in zip((2 * PAGE, len(history)), pane_1_pages, strict=True):
        assert _shown(pane_1) == chat_order[-shown_count:], pane_1
        assert pane_1["older_button"] == (shown_count < len(history)), pane_1
        assert _shown(pane_2) == newest, pane_2
    # Pane 2, after a double click and what was left: all of them, each once.
    for pane in last:
        assert pane["error"] == "" and not pane["older_button"], pane
        assert _shown(pane) == chat_order, [m["id"] for m in pane["messages"]]
    # Each older page was read once a pane, with the server's cursor.
    befores = [parse_qs(q.lstrip("?")).get("before", [None])[0] for q in result["reads"]]
    assert [b for b in befores if b is not None] == cursors * 2, result["reads"]
    assert all(f"limit={PAGE}" in q for q in result["reads"]), result["reads"]

    # The race: pane 1's older page was asked for before pane 2's turn and came after pane
    # 1 showed the newest page with that turn's message. Pane 1 shows two pages that join:
    # the chat's newest 100 messages, in order, none missing between them.
    assert len(after) == len(history) + 1 and after[-1]["role"] == "user", after[-3:]
    race = result["race"]
    assert race["error"] == "", race
    assert [m["id"] for m in race["messages"]] == [m["id"] for m in after[-2 * PAGE :]], [
        m["id"] for m in race["messages"]
    ]
    # The page held back was asked from the newest page's first message as it was; the
    # one shown, from the first message of the newest page with the turn.
    race_befores = [parse_qs(q.lstrip("?")).get("before") for q in result["race_reads"]]
    asked = [b[0] for b in race_befores if b]
    assert asked == [cursors[0], after[-PAGE]["id"]], result["race_reads"]
