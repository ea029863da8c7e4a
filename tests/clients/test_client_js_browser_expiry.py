"""``useChat`` (React) with the client package's ``BroadcasterChatTransport`` in Debian's
Chromium, on front-ends that want a token: the page's ``getToken`` asks the app's backend
(the browser script's token route, holding the API key) for a new chat token each time,
each living a few seconds. The stack: two front-ends of one Redis behind
deploy/nginx.conf, a one-second leeway, a worker with the fake provider slowed so that an
answer outlives several tokens. Shown, against the API's own view of the chat:

- a token that expires mid-answer: the server ends the answer's response with
  ``data-token-expired``, the transport asks ``getToken`` again (``refresh: true``) and
  resumes the answer after its last event; the tab's message is the whole answer, its
  text part once, and no error is shown.

Needs what tests/clients/test_client_js_browser.py needs (``make test-deps``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support import usechat_browser
from tests.support.polling import wait_for
from tests.support.stacks import Stack
from tests.support.token_ends import ADMIN, ENV
from tests.support.usechat_browser import Browser, answered

LIFE = 3
"""Seconds a chat token the page gets lives."""
WORKER = {"WORKER_FAKE_DELAY_MS": "150"}
"""An answer of the fake provider lasts about 10 s: two or three tokens' lives."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with usechat_browser.stack(tmp_path_factory.mktemp("expiry"), "expiry", WORKER, ENV) as s:
        yield s


@pytest.fixture(scope="module")
def browser(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with usechat_browser.browser(stack.url, tmp_path_factory.mktemp("expiry-app")) as b:
        b.serve_tokens(ADMIN, LIFE)
        yield b


def _answer_resumes(stack: Stack, chat: str, generation: str) -> list[dict[str, str]]:
    """The requests that resumed the answer's run after an event, from nginx's log (a
    request is written there once it has ended): at least one, or fail."""
    nginx = stack.nginx
    assert nginx is not None
    run = re.compile(rf"^/v1/chat/{chat}~{generation}~\d+/stream\?startIndex=[1-9]")

    def resumes() -> list[dict[str, str]]:
        return [r for r in nginx.requests() if run.match(r["uri"])]

    wait_for("a resume of the answer", resumes, within=10, context=lambda: str(nginx.requests()))
    return resumes()


def test_a_token_expiring_mid_answer_is_refreshed_and_the_answer_resumed(
    stack: Stack, browser: Browser
) -> None:
    chat = f"expiry-{time.time_ns()}"
    browser.open("tab", chat, tokens=True)
    browser.wait("tab", "s.status === 'ready'")
    browser.do("send", tab="tab", text="Tell me a long story")
    state = browser.wait("tab", "s.status === 'ready' && s.messages.length === 2")
    generation = answered(state, stack.url, chat, ADMIN)
    assert generation["status"] == "completed", generation
    asked = state["tokensAsked"]
    assert asked[0] is False and True in asked[1:], asked
    # Resumed after its last event, on a 200 (the new token taken), at least once.
    resumes = _answer_resumes(stack, chat, generation["id"])
    assert all(r["status"] == "200" and r["last_event_id"] for r in resumes), resumes
    assert browser.do("close", tab="tab")["errors"] == []
