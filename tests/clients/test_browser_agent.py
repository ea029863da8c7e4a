"""The demo page's chat tab against an agent (``WORKER_AGENTS``), in headless Chromium: the
AI SDK's own ``Chat`` (what ``useChat`` wraps) sends ``"provider": "helper"`` to
``/v1/chat``, and a pydantic-ai ``Agent`` on an offline ``FunctionModel``
(tests/support/agents.py) answers. Through nginx and two front-ends: an answer resumed
after a reload, the agent's own tool run, a stop that closes the agent's model stream, a
``kill -9`` of the worker mid-answer taken over by another, an approval the agent asks
for decided from a second tab, and a pane that comes to an answer after it ended
(tests/clients/browser/agent_chat.mjs drives the page).

Needs nginx, Debian's chromium-headless-shell, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never
skips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import node_host
from tests.support.agents import WORDS, marks
from tests.support.browser import (
    ARTIFACTS,
    BROWSER_DIR,
    missing_prerequisites,
    start_node_script,
    stop_browser_leftovers,
)
from tests.support.procs import ROOT
from tests.support.stacks import start_stack

SCRIPT = BROWSER_DIR / "agent_chat.mjs"
STEPS = "reload,tool,stop,kill,approval,late"
SLOW_WORDS = 60  # a "slow" answer of the agent's model: 60 words, a tenth of a second apart


def _worker_env(tmp_path: Path, lease: str) -> dict[str, str]:
    return {
        "WORKER_AGENTS": "helper=tests.support.agents:helper",
        "WORKER_PROVIDERS": "helper",
        "WORKER_LEASE_SECONDS": lease,
        "ANTHROPIC_API_KEY": "",
        "AGENT_MARKS": str(tmp_path / "marks.jsonl"),
        "PYTHONPATH": str(ROOT),
    }


def _last(panes: list[dict[str, Any]]) -> dict[str, Any]:
    """The last message, the same in every pane."""
    lasts = [p["messages"][-1] for p in panes]
    assert all(last == lasts[0] for last in lasts), panes
    assert all(p["error"] == "" for p in panes), panes
    return lasts[0]


def test_the_chat_tab_runs_an_agent_with_every_guarantee(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    env = _worker_env(tmp_path, "2")
    stack = start_stack(tmp_path, "agent-chat", env, frontends=2, nginx=True)
    stack.root, stack.worker_env = tmp_path, {**env, "WORKER_LEASE_SECONDS": "1"}
    profile = tmp_path / "chromium-profile"
    try:
        node = start_node_script(
            SCRIPT,
            [stack.url, str(ARTIFACTS / "agent-chat.png"), str(profile), "helper", STEPS],
        )
        assert node.stdout is not None
        line = node.stdout.readline()  # KILL, once the fourth answer shows in both panes
        if line == "KILL\n":
            assert stack.worker is not None
            stack.worker.popen.kill()
            stack.worker.popen.wait(10)
            stack.add_worker()
        code, out, err = node_host.finish(node, timeout=150)
        assert line == "KILL\n" and code == 0, (
            f"agent_chat.mjs exited with {code}\n{line}{err}\n{out}\n{stack.logs()}"
        )
        result = json.loads(out.strip().splitlines()[-1])
        chat = httpx.get(f"{stack.url}/v1/chat/{result['chat_id']}/messages").json()
        taker = stack.more_workers[0].log() if stack.more_workers else ""
        found = json.dumps({"result": result, "chat": chat}, indent=2)
        (ARTIFACTS / "agent-chat.json").write_text(found + "\n")
    finally:
        stop_browser_leftovers(profile)
        stack.stop()
    history = chat["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 6, history
    assert result["posts"] and {p["provider"] for p in result["posts"]} == {"helper"}

    # 1. The reload came mid-answer; both panes resumed it and end with all of it, once.
    assert all(len(p["messages"][1]["text"]) > 0 for p in result["before_reload"])
    slow = [WORDS[i % len(WORDS)] for i in range(SLOW_WORDS)]
    assert _last(result["first"])["text"].split() == slow

    # 2. The agent's own tool ran in the worker; both panes show its output.
    tool = _last(result["tool"])
    [weather] = tool["tools"]
    assert weather["name"] == "weather" and weather["state"] == "output-available", weather
    assert weather["output"] == "sunny in Paris"  # a string output is shown as it is
    assert tool["text"].endswith("The tool said: sunny in Paris")

    # 3. Stop: both panes show the cut answer ended by `abort`; the agent's model stream
    # was closed (the framework's call stopped, not just the delivery).
    stopped = _last(result["stopped"])["text"]
    assert [p["outcome"] for p in result["stopped"]] == ["abort", "abort"]
    assert 0 < len(stopped.split()) < SLOW_WORDS, stopped
    closed = marks(tmp_path / "marks.jsonl", "model stream closed")
    assert [m["prompt"] for m in closed] == ["slow: to be stopped"], closed

    # 4. The worker was killed mid-answer: another took it over and both panes end with
    # the whole answer, shown once (the cut attempt is what the page leaves out).
    taken = _last(result["takeover"])
    assert "attempt 2" in taker, taker  # the second worker did take the answer over
    assert taken["text"].split() == slow, taken

    # 5. The approval, asked in tab 1, decided in tab 2: every pane of both tabs shows the
    # tool's output and the rest of the answer, as the chat holds it.
    for tab in result["asked"]:
        for pane in tab:
            [asked] = pane["messages"][9]["tools"]
            assert asked["name"] == "delete" and asked["state"] == "approval-requested"
    approved = _last([p for tab in result["approved"] for p in tab])
    [deleted] = approved["tools"]
    assert deleted["state"] == "output-available" and deleted["output"] == "deleted /tmp/x"
    assert approved["text"].endswith("The tool said: deleted /tmp/x")
    assert [m["path"] for m in marks(tmp_path / "marks.jsonl", "delete")] == ["/tmp/x"]

    # 6. Pane 1 came to a quick answer late (its reads of the chat held until pane 2
    # showed the end): it shows the whole answer, as the chat holds it, and that it
    # finished, though no stream told it.
    assert result["late_reads"] >= 1, result["late_reads"]
    late = _last(result["late"])
    held = "".join(part.get("text", "") for part in history[11]["parts"])
    assert late["text"].split() == WORDS[:5] and late["text"] == held, (late, history[11])
    assert late["id"] == history[11]["id"], (late, history[11])
    assert [p["outcome_text"] for p in result["late"]] == ["finished", "finished: stop"]

    assert result["pageErrors"] == [] and result["httpErrors"] == [], result
