"""The demo's chat tab draws again only the messages that changed, in headless Chromium.

A pane draws its messages once a frame while an answer streams; each message keeps the
element drawn for it until the message itself changes. Two turns on a real front-end and
worker (fake provider, slowed down so the second answer streams for seconds):
tests/clients/browser/render.mjs keeps each pane's message elements once both panes show
some of the second answer, and reads them again when its text has grown, still streaming.
The three messages before the answer must be the very nodes kept, the answer's text must
have grown from what was shown, and the messages must be in the chat's order, as the
server keeps them. The browser, node and tests/clients/browser's npm packages are needed:
missing, the test fails and names them (never a skip).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import browser
from tests.support.stacks import start_stack

# 80 ms a token: an answer streams for about 5 s, time enough to see its text grow.
WORKER_ENV = {"WORKER_FAKE_DELAY_MS": "80"}


def _shown(pane: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["id"], m["role"]) for m in pane["messages"]]


def test_a_streaming_answer_leaves_the_messages_before_it_drawn_as_they_were(
    tmp_path: Path,
) -> None:
    if missing := browser.missing_prerequisites():
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    stack = start_stack(tmp_path, "render", WORKER_ENV)
    profile = tmp_path / "chromium-profile"
    browser.ARTIFACTS.mkdir(exist_ok=True)
    picture = browser.ARTIFACTS / "chat-render.png"
    try:
        code, out, err = browser.run_node_script(
            browser.BROWSER_DIR / "render.mjs", [stack.url, str(picture), str(profile)], 130
        )
        assert code == 0, f"render.mjs exited with {code}\n{err}\n{out}\n{stack.logs()}"
        result = json.loads(out.strip().splitlines()[-1])
        kept = httpx.get(f"{stack.url}/v1/chat/{result['chat_id']}/messages").json()["messages"]
    finally:
        browser.stop_browser_leftovers(profile)
        stack.stop()
    order = [(m["id"], m["role"]) for m in kept]
    assert [role for _, role in order] == ["user", "assistant"] * 2, kept
    final = {m["id"]: "".join(p["text"] for p in m["parts"] if p["type"] == "text") for m in kept}

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
