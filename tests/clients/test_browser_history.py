"""useChat (React) in Chromium with the AI SDK's own ``DefaultChatTransport`` whose
``prepareSendMessagesRequest`` sends only the new message (``{id, message}``), against a
real front-end, worker (fake provider) and Redis: the server keeps the history. Answers,
a reload (the page opens with ``GET /v1/chat/{id}/messages``), a second tab that goes on
with the chat, the AI SDK's regenerate and its edit of a user message: every tab and the
server hold the same chat, and no submit carried more than its one message.

The page is tests/clients/usechat/history.jsx (bundled by esbuild), driven by
tests/clients/usechat/browser.mjs a command at a time. Needs Debian's
chromium-headless-shell, node >= 20 and the npm packages of tests/clients/usechat; without
them the test fails and says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import usechat_browser
from tests.support.stacks import Stack, start_stack
from tests.support.usechat_browser import Browser

READY = "s.status === 'ready' && s.messages.length === {n} && s.messages[{n} - 1].text"


def ready(browser: Browser, tab: str, count: int) -> list[dict[str, Any]]:
    """The tab's messages once it shows ``count`` of them and is ready."""
    state = browser.wait(tab, READY.format(n=count), 45_000)
    assert state["error"] == "", state
    messages: list[dict[str, Any]] = state["messages"]
    return messages


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    usechat_browser.require()
    s = start_stack(tmp_path_factory.mktemp("history"), "history", {"WORKER_FAKE_DELAY_MS": "5"})
    yield s  # the stack is stopped after the module's tests, however they ended
    s.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with usechat_browser.browser(stack.url, tmp_path_factory.mktemp("history-app"), "history") as b:
        yield b


def kept(stack: Stack, chat: str) -> list[dict[str, Any]]:
    """The chat as the server keeps it: each message's role and text."""
    got = httpx.get(f"{stack.url}/v1/chat/{chat}/messages", timeout=10).json()["messages"]
    return [
        {
            "role": m["role"],
            "text": "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text"),
        }
        for m in got
    ]


def shown(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "text": m["text"]} for m in messages]


def test_use_chat_sends_only_the_new_message_and_the_server_keeps_the_chat(
    stack: Stack, browser: Browser
) -> None:
    chat = f"history-{time.time_ns()}"
    browser.open("a", chat)
    browser.do("send", tab="a", text="First question")
    ready(browser, "a", 2)
    browser.do("send", tab="a", text="Second question")
    two_turns = shown(ready(browser, "a", 4))
    assert two_turns == kept(stack, chat)
    assert [m["text"] for m in two_turns][::2] == ["First question", "Second question"]

    # A reload opens with the history the server keeps.
    browser.do("reload", tab="a")
    assert shown(ready(browser, "a", 4)) == two_turns

    # A second tab opens the chat and goes on with it; the first sees it after a reload.
    browser.open("b", chat)
    assert shown(ready(browser, "b", 4)) == two_turns
    browser.do("send", tab="b", text="Third, from the second tab")
    three = shown(ready(browser, "b", 6))
    assert three == kept(stack, chat)
    browser.do("reload", tab="a")
    assert shown(ready(browser, "a", 6)) == three

    # The AI SDK's regenerate: the last answer made again, in its place.
    last_answer = browser.value("a", "[...document.querySelectorAll('.msg')].at(-1).dataset.id")
    browser.do("click", tab="a", selector="button.regenerate")
    browser.do(
        "wait",
        tab="a",
        until="s.status === 'ready' && s.messages.length === 6 && s.messages[5].text",
        ms=45_000,
    )
    again = browser.value("a", "[...document.querySelectorAll('.msg')].at(-1).dataset.id")
    assert again != last_answer
    regenerated = shown(ready(browser, "a", 6))
    assert regenerated == kept(stack, chat) and regenerated[:5] == three[:5]

    # The AI SDK's edit of the second question: it replaces it, and what followed goes.
    second = browser.value("a", "[...document.querySelectorAll('.msg')][2].dataset.id")
    browser.value("a", f"window.edit({json.dumps(second)}, 'Second, edited'), null")
    edited = shown(ready(browser, "a", 4))
    assert [m["text"] for m in edited][:3] == [
        "First question",
        two_turns[1]["text"],
        "Second, edited",
    ]
    assert edited == kept(stack, chat)

    # Every submit of both tabs sent its one message, never the chat.
    for tab in ("a", "b"):
        for body in browser.value(tab, "window.sent"):
            assert set(body) <= {"id", "message", "trigger", "messageId"} and body["message"], body
