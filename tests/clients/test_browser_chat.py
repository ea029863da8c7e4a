"""The demo page's chat tab in a real browser: headless Chromium through a real nginx.

The stack is real processes: a Redis server of the test's own, two front-ends behind nginx
(configured by deploy/nginx.conf), and a worker with the fake provider, slowed down so an
answer takes seconds, and the example tools (``WORKER_TOOLS``), as ``python -m broadcaster
demo`` starts it. tests/clients/browser/chat.mjs drives the page: the tab's two panes are
two AI SDK Chat instances on one chat; a message is sent, the page is reloaded mid-answer
and both panes must resume it; the worker's tool is asked for; an answer is stopped.
What the panes show is checked against the chat's messages and the generations as the
API reports them. Needs nginx, Debian's chromium, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never skips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.cli import DEMO_TOOLS
from broadcaster.core.embedded import free_port
from tests.support.browser import (
    ARTIFACTS,
    BROWSER_DIR,
    missing_prerequisites,
    png_size,
    run_node_script,
    stop_browser_leftovers,
)
from tests.support.nginx import Nginx, find_nginx
from tests.support.procs import ROOT, Proc, own_redis, start_frontend, start_worker

SCRIPT = BROWSER_DIR / "chat.mjs"
# 80 ms a token: an answer streams for about 5 s, so a reload lands inside it.
WORKER_ENV = {"WORKER_FAKE_DELAY_MS": "80", "WORKER_TOOLS": DEMO_TOOLS, "PYTHONPATH": str(ROOT)}


def _texts(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def _same_in_both_panes(panes: list[dict[str, Any]], when: str) -> list[dict[str, Any]]:
    assert len(panes) == 2, panes
    first, second = panes
    assert first["messages"] == second["messages"], f"{when}: the panes differ\n{panes}"
    assert first["error"] == second["error"] == "", f"{when}: {panes}"
    messages: list[dict[str, Any]] = first["messages"]
    return messages


def test_the_chat_tab_resumes_stops_and_runs_the_worker_tool(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    nginx_binary = find_nginx()

    redis = own_redis(tmp_path / "redis")
    procs: list[Proc] = []
    nginx: Nginx | None = None
    profile = tmp_path / "chromium-profile"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "chat-browser.png"
    screenshot.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        frontends = [start_frontend(redis.url, tmp_path, f"frontend-{i}") for i in (1, 2)]
        procs.extend(frontends)
        procs.append(start_worker(redis.url, tmp_path, "worker", WORKER_ENV))
        ports = [f.port for f in frontends if f.port]
        nginx = Nginx(nginx_binary, tmp_path / "nginx", free_port(), ports)
        nginx.start()

        code, out, err = run_node_script(
            SCRIPT, [nginx.url, str(screenshot), str(profile)], timeout=120
        )
        elapsed = time.monotonic() - started
        assert code == 0, (
            f"chat.mjs exited with {code}\nstderr:\n{err}\nstdout:\n{out}\n"
            + "".join(f"{p.name} log:\n{p.log()[-3000:]}\n" for p in procs)
            + f"nginx log:\n{nginx.log()[-2000:]}"
        )
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        chat = result["chat_id"]
        requests = result["chat_requests"]
        posts = [r for r in requests if r["method"] == "POST" and r["path"] == "/v1/chat"]
        with httpx.Client(base_url=nginx.url, timeout=10) as client:
            messages = client.get(f"/v1/chat/{chat}/messages").json()
            after_stop = client.get(f"/v1/chat/{chat}/stream")
            generations = [client.get(f"/v1/generations/{r['generation']}").json() for r in posts]
        found = {"result": result, "messages": messages, "generations": generations}
        (ARTIFACTS / "chat-browser.json").write_text(json.dumps(found, indent=2) + "\n")
        print(f"\nbrowser chat run: {elapsed:.1f} s, screenshot: {screenshot}")
    finally:
        stop_browser_leftovers(profile)
        if nginx is not None:
            nginx.stop()
        for p in procs:
            p.stop()
        redis.stop()

    assert result["address"].endswith(f"#chat={chat}")
    history = messages["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3, history
    # One generation a turn, each sent by one pane only (the other pane resumed it).
    assert [r["phase"] for r in posts] == ["first", "tool", "stop"], result["chat_requests"]
    assert [g["status"] for g in generations] == ["completed", "completed", "cancelled"]

    # 1. The reload came mid-answer, both panes resumed it (each with its own
    # GET /v1/chat/{id}/stream answered 200) and ended with the whole answer.
    before = _same_in_both_panes(result["before_reload"], "before the reload")
    first = _same_in_both_panes(result["first"], "after the first answer")
    answer = first[1]["text"]
    user = {"id": history[0]["id"], "role": "user", "text": result["first_prompt"], "tools": []}
    assert first[0] == user
    assert first[1]["id"] == history[1]["id"] == before[1]["id"]
    assert answer == generations[0]["text"] == _texts(history[1])
    assert answer.startswith("You said: " + result["first_prompt"])
    assert 0 < len(before[1]["text"]) < len(answer), (before[1], answer)
    assert answer.startswith(before[1]["text"])
    resumes = [r for r in requests if r["phase"] == "reloaded" and r["path"].endswith("/stream")]
    assert [r["status"] for r in resumes] == [200, 200], requests
    assert [p["outcome_text"] for p in result["first"]] == ["finished: stop"] * 2

    # 2. The worker ran the tool; its output is in both panes and in the chat's messages.
    tool_turn = _same_in_both_panes(result["tool"], "after the tool turn")
    assert tool_turn[2]["text"] == result["suggestion"]
    [tool] = tool_turn[3]["tools"]
    assert tool["state"] == "output-available" and tool["output"], tool
    [stored] = [p for p in history[3]["parts"] if p.get("toolCallId") == tool["call_id"]]
    assert stored["state"] == "output-available"
    assert json.loads(tool["output"]) == stored["output"]
    assert tool["name"] == "roll_dice" and set(stored["output"]) == {"rolls", "total"}
    assert tool_turn[3]["text"] == _texts(history[3]) == generations[1]["text"]
    assert tool_turn[3]["text"]

    # 3. Stop: the answer ended with `abort` in both panes, shorter than a whole answer.
    stopped = _same_in_both_panes(result["stopped"], "after stop")
    assert [p["outcome"] for p in result["stopped"]] == ["abort", "abort"]
    assert stopped[5]["text"] == _texts(history[5]) == generations[2]["text"]
    echo, cut = "You said: " + result["third_prompt"] + "\n", stopped[5]["text"]
    assert cut and (echo.startswith(cut) or cut.startswith(echo)), cut
    assert after_stop.status_code == 204  # nothing is running any more

    assert result["page_errors"] == []
    assert result["http_errors"] == []
    others = [e for e in result["console_errors"] if not e["url"].endswith("/favicon.ico")]
    assert others == [], others

    width, height = png_size(screenshot)
    assert width >= 1000 and height >= 600, (width, height)
