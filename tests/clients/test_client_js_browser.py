"""``useChat`` (React, ``@ai-sdk/react`` and the AI SDK 7) with the client package's
``BroadcasterChatTransport`` in Debian's Chromium, one browser for the whole module
(tests/clients/usechat/browser.mjs, driven a command at a time). The page is what an app
writes with the package (tests/clients/usechat/app.jsx, bundled by esbuild): useChat with
the transport, ``followChat``, ``loadMessages`` and ``respondToApproval``. The stack: two
front-ends of one Redis behind deploy/nginx.conf, a worker with the fake provider slowed
so that an answer takes seconds, and the demo's tools (``count_words`` waits for a
person). Shown, each against the API's own view of the chat:

- an answer streams into useChat, its text part once;
- a reload mid-answer resumes it where it was: one message, the whole text once;
- Stop ends the generation (``cancelled``, its stream with ``abort``), not only the tab's
  request;
- a turn sent in one tab shows in a second tab, user message and answer;
- an approval asked in both tabs, decided in one: the tool runs, both tabs show it;
- the front-end serving the answer killed (SIGKILL) mid-answer: it goes on through nginx
  on the other, each part once.

Needs nginx, Debian's chromium-headless-shell, node >= 20 and the npm packages of
tests/clients/usechat and clients/js (``make test-deps``); without them the tests fail and
say so."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from broadcaster.cli import DEMO_TOOLS
from tests.support import usechat_browser
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.stacks import Stack
from tests.support.usechat_browser import Browser, answered, latest_generation

WORKER = {"WORKER_FAKE_DELAY_MS": "40", "WORKER_TOOLS": DEMO_TOOLS, "PYTHONPATH": str(ROOT)}
_chats = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with usechat_browser.stack(tmp_path_factory.mktemp("usechat"), "usechat", WORKER) as s:
        yield s


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with usechat_browser.browser(stack.url, tmp_path_factory.mktemp("usechat-app")) as b:
        yield b


def _chat() -> str:
    return f"usechat-{time.time_ns()}-{next(_chats)}"


READY = "s.status === 'ready' && s.messages.length === {n} && s.messages[{n} - 1].text"
STREAMING = "s.status === 'streaming' && s.messages.length === 2 && s.messages[1].text.length > 20"


def test_an_answer_streams_into_use_chat(stack: Stack, browser: Browser) -> None:
    chat = _chat()
    browser.open("one", chat)
    browser.do("send", tab="one", text="Hello")
    state = browser.wait("one", READY.format(n=2))
    assert state["messages"][0] == {"role": "user", "text": "Hello", "texts": 1, "tools": []}
    assert answered(state, stack.url, chat)["status"] == "completed"
    browser.do("close", tab="one")


def test_a_reload_mid_answer_resumes_where_it_was(stack: Stack, browser: Browser) -> None:
    chat = _chat()
    browser.open("reload", chat)
    browser.do("send", tab="reload", text="Tell me more")
    before = browser.wait("reload", STREAMING)
    browser.do("reload", tab="reload")
    # The reloaded page is ready with the answer so far for a moment before useChat
    # resumes it: wait for the answer's end, then for the tab to show all of it.
    wait_for(
        "the answer ended",
        lambda: latest_generation(stack.url, chat)["status"] not in ("queued", "running"),
    )
    whole = len(latest_generation(stack.url, chat)["text"])
    state = browser.wait("reload", READY.format(n=2) + f" && s.messages[1].text.length >= {whole}")
    assert state["messages"][1]["text"].startswith(before["messages"][1]["text"])
    assert answered(state, stack.url, chat)["status"] == "completed"
    assert browser.do("close", tab="reload")["errors"] == []


def test_stop_ends_the_generation(stack: Stack, browser: Browser) -> None:
    chat = _chat()
    browser.open("stop", chat)
    browser.do("send", tab="stop", text="Go on and on")
    browser.wait("stop", STREAMING)
    browser.do("click", tab="stop", selector="button.stop")
    browser.wait("stop", "s.status === 'ready'")
    deadline = time.monotonic() + 10
    while (generation := latest_generation(stack.url, chat))["status"] != "cancelled":
        assert time.monotonic() < deadline, generation
        time.sleep(0.1)
    events = httpx.get(f"{stack.url}/v1/streams/{generation['id']}/events", timeout=10).text
    assert '"type":"abort"' in events
    browser.do("close", tab="stop")


def test_a_turn_sent_in_one_tab_shows_in_another(stack: Stack, browser: Browser) -> None:
    chat = _chat()
    browser.open("left", chat)
    browser.open("right", chat)
    browser.do("send", tab="right", text="From the right tab")
    right = browser.wait("right", READY.format(n=2))
    left = browser.wait("left", READY.format(n=2))
    assert left["messages"] == right["messages"]
    answered(left, stack.url, chat)
    browser.do("send", tab="left", text="And from the left")
    left = browser.wait("left", READY.format(n=4))
    right = browser.wait("right", READY.format(n=4))
    assert left["messages"] == right["messages"]
    answered(right, stack.url, chat)
    for tab in ("left", "right"):
        assert browser.do("close", tab=tab)["errors"] == []


def test_an_approval_asked_in_two_tabs_decided_in_one(stack: Stack, browser: Browser) -> None:
    chat = _chat()
    browser.open("asker", chat)
    browser.open("watcher", chat)
    browser.do("send", tab="asker", text="Please count_words in this sentence")
    waiting = "s.messages.length === 2 && s.messages[1].tools.includes('approval-requested')"
    browser.wait("asker", waiting)
    browser.wait("watcher", waiting)
    browser.do("click", tab="asker", selector="button.approve")
    ran = "s.status === 'ready' && s.messages[1].tools.includes('output-available')"
    asker = browser.wait("asker", ran)
    watcher = browser.wait("watcher", ran)
    assert asker["messages"][-1]["text"] == watcher["messages"][-1]["text"] != ""
    assert latest_generation(stack.url, chat)["status"] == "completed"
    for tab in ("asker", "watcher"):
        assert browser.do("close", tab=tab)["errors"] == []


def _where_submits_go(stack: Stack) -> int:
    """The index of the front-end nginx sends ``POST /v1/chat`` to (its route key is the
    path, the same for every submit): a refused submit's upstream, from nginx's log."""
    assert stack.nginx is not None
    httpx.post(f"{stack.url}/v1/chat", content=b"{}", timeout=10)
    posts = [r for r in stack.nginx.requests() if (r["method"], r["uri"]) == ("POST", "/v1/chat")]
    row = posts[-1]
    ports = [str(fe.port) for fe in stack.frontends]
    return ports.index(row["upstream"].rsplit(":", 1)[1])


def test_a_front_end_killed_mid_answer(stack: Stack, browser: Browser) -> None:
    """Last: it leaves the stack one front-end short. The front-end killed is the one the
    submit's answer streams from."""
    victim = stack.frontends[_where_submits_go(stack)]
    chat = _chat()
    browser.open("kill", chat)
    browser.wait("kill", "s.status === 'ready'")
    browser.do("send", tab="kill", text="Keep talking")
    browser.wait("kill", STREAMING)
    victim.popen.kill()
    victim.popen.wait()
    state = browser.wait("kill", READY.format(n=2))
    assert answered(state, stack.url, chat)["status"] == "completed"
    browser.do("close", tab="kill")
