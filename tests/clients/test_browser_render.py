"""The demo's chat tab draws again only the messages that changed, in headless Chromium,
and a streaming answer is updated in place.

A pane draws its messages once a frame while an answer streams; each message keeps the
element drawn for it, and a message that changed (the answer streaming) has that element
brought up to date. Two turns on a real front-end and worker (fake provider, slowed down
so an answer streams for seconds): tests/clients/browser/render.mjs keeps each pane's
message elements once both panes show some of the second answer, and reads them again when
its text has grown, still streaming. The three messages before the answer must be the very
nodes kept, the answer's text must have grown from what was shown, and the messages must be
in the chat's order, as the server keeps them. Then an answer with reasoning:
tests/clients/browser/reasoning.mjs opens its reasoning box in each pane and selects the
reasoning's text while the answer streams; when its text has grown, the box must be the
same element, still open, and the selection still there. The browser, node and
tests/clients/browser's npm packages are needed: missing, the test fails and names them
(never a skip).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import browser
from tests.support.stacks import Stack, start_stack

# 80 ms a token: an answer streams for about 5 s, time enough to see its text grow.
WORKER_ENV = {"WORKER_FAKE_DELAY_MS": "80"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if missing := browser.missing_prerequisites():
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    browser.ARTIFACTS.mkdir(exist_ok=True)
    s = start_stack(tmp_path_factory.mktemp("render"), "render", WORKER_ENV)
    yield s  # stopped after the module's tests, however they ended
    s.stop()


def _run(stack: Stack, script: str, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What ``script`` (one of tests/clients/browser's) printed, and the messages the
    server keeps of the chat it used."""
    profile = tmp_path / "chromium-profile"
    picture = browser.ARTIFACTS / f"chat-{script.removesuffix('.mjs')}.png"
    try:
        code, out, err = browser.run_node_script(
            browser.BROWSER_DIR / script, [stack.url, str(picture), str(profile)], 130
        )
    finally:
        browser.stop_browser_leftovers(profile)
    assert code == 0, f"{script} exited with {code}\n{err}\n{out}\n{stack.logs()}"
    result = json.loads(out.strip().splitlines()[-1])
    kept = httpx.get(f"{stack.url}/v1/chat/{result['chat_id']}/messages").json()["messages"]
    return result, kept


def _shown(pane: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["id"], m["role"]) for m in pane["messages"]]


def _text(message: dict[str, Any], kind: str = "text") -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == kind)


def test_a_streaming_answer_leaves_the_messages_before_it_drawn_as_they_were(
    stack: Stack, tmp_path: Path
) -> None:
    result, kept = _run(stack, "render.mjs", tmp_path)
    order = [(m["id"], m["role"]) for m in kept]
    assert [role for _, role in order] == ["user", "assistant"] * 2, kept
    final = {m["id"]: _text(m) for m in kept}

    for before, during in zip(result["before"], result["during"], strict=True):
        # Mid-answer, after more of it came: the earlier messages are the nodes kept...
        assert during["status"] == "streaming", during
        assert during["same"][:3] == [True, True, True], (before, during)
        # ...the answer's element shows its text grown from what was shown...
        shown, grown = before["messages"][3]["text"], during["messages"][3]["text"]
        assert shown and len(grown) > len(shown) and grown.startswith(shown), (shown, grown)
        assert final[order[3][0]].startswith(grown), (grown, final)
        # ...and every message is where the chat has it, once.
        assert _shown(during) == _shown(before) == order, (during, order)
        for message in during["messages"][:3]:
            assert message["text"] == final[message["id"]], (message, final)

    # The sender never reloads the chat: after the turn, the same nodes still, the answer
    # whole.
    sender = result["sender_after"]
    assert sender["same"][:3] == [True, True, True] and _shown(sender) == order, sender
    for pane in result["panes"]:
        assert pane["error"] == "" and pane["outcome"] == "finish", pane
        assert [(m["id"], m["role"]) for m in pane["messages"]] == order, pane
        assert [m["text"] for m in pane["messages"]] == [final[i] for i, _ in order], pane


def test_a_reasoning_box_opened_while_the_answer_streams_stays_open(
    stack: Stack, tmp_path: Path
) -> None:
    result, kept = _run(stack, "reasoning.mjs", tmp_path)
    assert [m["role"] for m in kept] == ["user", "assistant"], kept
    reasoning, final = _text(kept[1], "reasoning"), _text(kept[1])
    assert reasoning == "Thinking about: Think it over, then answer.", kept[1]

    opened, during, after = result["opened"], result["during"], result["after"]
    # Opened mid-answer: both panes show the reasoning whole, its box open, and pane 1 has
    # the reasoning's text selected.
    for pane in opened["panes"]:
        assert pane["status"] == "streaming" and pane["same"] and pane["open"], opened
        assert pane["reasoning"] == reasoning and pane["text"], opened
    assert opened["selected"] == reasoning and opened["selection_in_box"], opened
    # After more of the answer came, still streaming: the very box, still open, the text
    # grown from what was shown, the selection kept.
    for before, pane in zip(opened["panes"], during["panes"], strict=True):
        assert pane["status"] == "streaming", during
        assert pane["same"] and pane["open"] and pane["reasoning"] == reasoning, during
        assert len(pane["text"]) > len(before["text"]) and final.startswith(pane["text"]), during
    assert during["selected"] == reasoning and during["selection_in_box"], during
    # After the turn: the same still, and the answer whole.
    for pane in after["panes"]:
        assert pane["same"] and pane["open"] and pane["text"] == final, after
    for pane in result["panes"]:
        assert pane["error"] == "" and pane["outcome"] == "finish", pane
        assert _shown(pane) == [(m["id"], m["role"]) for m in kept], pane
