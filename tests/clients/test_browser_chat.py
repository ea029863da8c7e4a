"""The demo page's chat tab in a real browser: headless Chromium through a real nginx.

The stack is real processes: a Redis server of the test's own, two front-ends behind nginx
(configured by deploy/nginx.conf), and a worker with the fake provider, slowed down so an
answer takes seconds, and the example tools (``WORKER_TOOLS``), as ``python -m broadcaster
demo`` starts it. tests/clients/browser/chat.mjs drives the page: the tab's two panes are
two AI SDK Chat instances on one chat; a message is sent, the page is reloaded mid-answer
and both panes must resume it; the worker's tool is asked for; an answer is stopped; and
during a fourth answer the test kills the worker (SIGKILL) and starts another, which
takes the answer over and starts it again. What the panes show is checked against the
chat's messages and the generations as the API reports them. It runs twice: on an open
deployment, and on one with access control, where the page mints a chat token with the
API key typed into it: two stacks and two browsers of their own, run at the same time (the
runs mostly wait for answers to stream) by the module's ``runs``, each case's test checking
its own. Needs nginx, Debian's chromium-headless-shell, node and the npm packages of
tests/clients/browser; without them the test fails and says what to install. It never
skips.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.auth.credentials import hash_key
from broadcaster.cli import DEMO_TOOLS
from broadcaster.core.embedded import free_port
from tests.support import node_host
from tests.support.browser import (
    ARTIFACTS,
    BROWSER_DIR,
    missing_prerequisites,
    png_size,
    start_node_script,
    stop_browser_leftovers,
)
from tests.support.nginx import Nginx, find_nginx
from tests.support.procs import ROOT, Proc, own_redis, start_frontend, start_worker
from tests.support.shared_chromium import SharedChromium

SCRIPT = BROWSER_DIR / "chat.mjs"
# 80 ms a token: an answer streams for about 5 s, so a reload lands inside it.
WORKER_ENV = {"WORKER_FAKE_DELAY_MS": "80", "WORKER_TOOLS": DEMO_TOOLS, "PYTHONPATH": str(ROOT)}
# The worker that takes the killed one's answer over claims it after 1 s of silence.
TAKEOVER_ENV = {**WORKER_ENV, "WORKER_LEASE_SECONDS": "1"}
CHAT_PATH = re.compile(r"^/v1/chat/([A-Za-z0-9_-]+)/")
API_KEY = "browser-chat-test-key"
SECURED = {  # the front-ends' access control
    "BROADCASTER_API_KEYS": hash_key(API_KEY),
    "BROADCASTER_TOKEN_SECRET": "browser-chat-test-secret-0123456789",
}


def _texts(message: dict[str, Any]) -> str:
    """The text of a message's latest attempt: after its last ``data-retry``, if any (a
    message the chat holds as a page sent it back keeps the parts before one, which the
    page does not show)."""
    parts = message["parts"]
    retries = [i for i, p in enumerate(parts) if p["type"] == "data-retry"]
    return "".join(
        p["text"] for p in parts[retries[-1] + 1 if retries else 0 :] if p["type"] == "text"
    )


def _same_in_both_panes(panes: list[dict[str, Any]], when: str) -> list[dict[str, Any]]:
    assert len(panes) == 2, panes
    first, second = panes
    assert first["messages"] == second["messages"], f"{when}: the panes differ\n{panes}"
    assert first["error"] == second["error"] == "", f"{when}: {panes}"
    messages: list[dict[str, Any]] = first["messages"]
    return messages


def _alike_mid_answer(panes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Both panes mid-answer, read at one moment: the same messages, but each pane gets the
    answer over its own response (the sender's POST, the other's resume), so one may be a
    delta or two ahead. Its text in one is a prefix of the other's. Each pane's messages."""
    assert len(panes) == 2, panes
    assert all(p["error"] == "" for p in panes), panes
    first, second = (p["messages"] for p in panes)
    without_text = [[{**m, "text": None} for m in ms[-1:]] for ms in (first, second)]
    assert first[:-1] == second[:-1] and without_text[0] == without_text[1], panes
    short, long = sorted((first[-1]["text"], second[-1]["text"]), key=len)
    assert long.startswith(short), f"before the reload: the panes differ\n{panes}"
    return [first, second]


def _api_view(base_url: str, result: dict[str, Any], key: str | None) -> dict[str, Any]:
    """What the API says of the chat and of the generation each turn started (with the
    API key, and viewer tokens minted with it, when access control is on)."""
    auth = {"authorization": f"Bearer {key}"} if key else {}
    posts = [
        r for r in result["chat_requests"] if r["method"] == "POST" and r["path"] == "/v1/chat"
    ]
    chat = result["chat_id"]
    with httpx.Client(base_url=base_url, timeout=10, headers=auth) as client:
        generations = []
        for gid in (r["generation"] for r in posts):
            viewer = {}
            if key:
                minted = client.post(f"/v1/streams/{gid}/tokens").json()
                viewer = {"authorization": f"Bearer {minted['viewer_token']}"}
            generations.append(client.get(f"/v1/generations/{gid}", headers=viewer).json())
        return {
            "posts": posts,
            "messages": client.get(f"/v1/chat/{chat}/messages").json()["messages"],
            "stream_at_the_end": client.get(f"/v1/chat/{chat}/stream").status_code,
            "generations": generations,
        }


def _kill_the_worker_mid_answer(
    node: subprocess.Popen[str], nginx: Nginx, key: str | None, worker: Proc
) -> dict[str, Any]:
    """Wait until the fourth answer has begun (the chat's id is in nginx's log once a pane
    read its messages), then SIGKILL the worker that writes it; what the chat held then."""
    auth = {"authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + 90
    chat = None  # the page keeps one chat until its seventh step, long after this
    with httpx.Client(base_url=nginx.url, timeout=5, headers=auth) as client:
        while node.poll() is None and time.monotonic() < deadline:
            if chat is None:
                chats = [CHAT_PATH.match(r["uri"]) for r in nginx.requests()]
                chat = next((m.group(1) for m in chats if m), None)
            body = client.get(f"/v1/chat/{chat}/messages").json() if chat else {}
            messages = body.get("messages", [])
            if len(messages) == 8 and body["status"] == "running" and _texts(messages[7]):
                worker.popen.kill()
                worker.popen.wait(5)
                return {"status": body["status"], "text": _texts(messages[7])}
            # Each look is a request through nginx to a front-end; an answer streams for
            # about 5 s, so one look every 0.2 s still kills the worker early in it.
            time.sleep(0.2)
    raise AssertionError("the fourth answer never began (or chat.mjs ended first)")


def _run(
    tmp_path: Path, key: str | None, screenshot: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stack (with access control when there is a ``key``), chat.mjs against it
    through nginx (typing the key into the page), and the API's view afterwards."""
    env = SECURED if key else {}
    nginx_binary = find_nginx()
    redis = own_redis(tmp_path / "redis")
    procs: list[Proc] = []
    nginx: Nginx | None = None
    profile = tmp_path / "chromium-profile"
    own_browser = SharedChromium()
    started = time.monotonic()
    try:
        frontends = [start_frontend(redis.url, tmp_path, f"frontend-{i}", env) for i in (1, 2)]
        procs.extend(frontends)
        procs.append(start_worker(redis.url, tmp_path, "worker", WORKER_ENV))
        ports = [f.port or 0 for f in frontends]
        nginx = Nginx(nginx_binary, tmp_path / "nginx", free_port(), ports)
        nginx.start()
        # A browser of the run's own: a script on a shared one would also follow the other
        # run's pages (playwright-core attaches to every page of a browser it connects to).
        env = {"BROWSER_CHAT_API_KEY": key or "", **own_browser.env()}
        node = start_node_script(SCRIPT, [nginx.url, str(screenshot), str(profile)], env)
        try:
            at_kill = _kill_the_worker_mid_answer(node, nginx, key, procs[-1])
            procs.append(start_worker(redis.url, tmp_path, "worker-2", TAKEOVER_ENV))
        except AssertionError as missed:  # say where chat.mjs was
            code, out, err = node_host.finish(node, timeout=120)
            raise AssertionError(f"{missed}; chat.mjs exited with {code}\n{err}") from None
        code, out, err = node_host.finish(node, timeout=120)
        assert code == 0, (
            f"chat.mjs exited with {code}\nstderr:\n{err}\nstdout:\n{out}\n"
            + "".join(f"{p.name} log:\n{p.log()[-3000:]}\n" for p in procs)
            + f"nginx log:\n{nginx.log()[-2000:]}"
        )
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        api = {**_api_view(nginx.url, result, key), "at_kill": at_kill}
        found = {"result": result, "api": api}
        screenshot.with_suffix(".json").write_text(json.dumps(found, indent=2) + "\n")
        print(f"\nbrowser chat run: {time.monotonic() - started:.1f} s, screenshot: {screenshot}")
        return result, api
    finally:
        stop_browser_leftovers(profile)
        own_browser.stop()
        if nginx is not None:
            nginx.stop()
        for p in procs:
            p.stop()
        redis.stop()


ACCESS = ["open", "chat-tokens"]
Run = tuple[dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Run]]]:
    """The selected cases' runs, started together: each a stack, a browser and chat.mjs
    of its own, so they share nothing but the machine; each case's test waits for its own."""
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    selected = {
        str(item.callspec.params["access"])
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }
    with ThreadPoolExecutor(len(ACCESS)) as pool:
        futures = {}
        for access in sorted(selected):
            screenshot = ARTIFACTS / f"chat-browser-{access}.png"
            screenshot.unlink(missing_ok=True)
            key = API_KEY if access == "chat-tokens" else None
            futures[access] = pool.submit(_run, tmp_path_factory.mktemp(access), key, screenshot)
        yield futures


@pytest.mark.timeout(240)  # the first case's test waits while both run
@pytest.mark.parametrize("access", ACCESS)
def test_the_chat_tab_resumes_stops_and_runs_the_worker_tool(
    runs: dict[str, Future[Run]], access: str
) -> None:
    result, api = runs[access].result()
    screenshot = ARTIFACTS / f"chat-browser-{access}.png"

    chat, requests, history = result["chat_id"], result["chat_requests"], api["messages"]
    generations = api["generations"]
    assert result["address"].endswith(f"#chat={chat}")
    assert [m["role"] for m in history] == ["user", "assistant"] * 5, history
    # One generation a turn, each sent by one pane only (the other pane resumed it); the
    # approval's decision is a second POST of the same generation.
    phases = ["first", "tool", "stop", "takeover", "approval", "approval"]
    assert [r["phase"] for r in api["posts"]] == phases, requests
    statuses = ["completed", "completed", "cancelled", "completed", "completed", "completed"]
    assert [g["status"] for g in generations] == statuses
    assert generations[4]["id"] == generations[5]["id"]
    # With access control, the page minted one chat token (with the key typed into it)
    # and used it for everything, the reload included; the browser never sent the key
    # to the chat routes.
    minted = [r["status"] for r in requests if r["path"].endswith("/tokens")]
    assert minted == ([200] if access == "chat-tokens" else []), requests

    # 1. The reload came mid-answer, both panes resumed it (each with its own
    # GET /v1/chat/{id}/stream answered 200) and ended with the whole answer.
    before_panes = _alike_mid_answer(result["before_reload"])
    first = _same_in_both_panes(result["first"], "after the first answer")
    answer = first[1]["text"]
    user = {"id": history[0]["id"], "role": "user", "text": result["first_prompt"]}
    assert first[0] == {**user, "tools": [], "retry": None}
    assert answer == generations[0]["text"] == _texts(history[1])
    assert answer.startswith("You said: " + result["first_prompt"])
    for before in before_panes:
        assert first[1]["id"] == history[1]["id"] == before[1]["id"]
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
    assert api["stream_at_the_end"] == 204  # nothing is running any more

    # 4. The worker was killed mid-answer; another took the answer over and continued it
    # in the same text part (a transient `data-continued`, which the page need not know):
    # both panes show the one answer, once, which is the generation's text and the chat's,
    # with nothing to discard (no `data-retry` part).
    takeover = _same_in_both_panes(result["takeover"], "after the takeover")
    assert api["at_kill"]["status"] == "running"
    assert takeover[7]["retry"] is None, takeover[7]
    assert takeover[7]["text"] == _texts(history[7]) == generations[3]["text"]
    assert takeover[7]["text"].count("You said: ") == 1
    assert takeover[7]["text"].startswith("You said: " + result["fourth_prompt"] + "\n")
    assert len(takeover[7]["text"]) > len(api["at_kill"]["text"])

    # The list of chats beside the panes shows this one, titled by its first question,
    # finished: kept live by the chats' lifecycle feed.
    [listed] = [c for c in result["chat_list"] if c["id"] == chat]
    assert listed == {"id": chat, "title": result["first_prompt"], "status": "finished"}

    # 5. The tool that waits for a person: both panes offered the decision; after pane 2
    # approved, both show its output and the rest of the answer, as the chat holds it.
    for pane in result["asked"]:
        [waiting] = pane["messages"][9]["tools"]
        assert waiting["name"] == "count_words" and waiting["state"] == "approval-requested"
    approved = _same_in_both_panes(result["approved"], "after the approval")
    [ran] = approved[9]["tools"]
    assert ran["state"] == "output-available", ran
    [kept] = [p for p in history[9]["parts"] if p.get("toolCallId") == ran["call_id"]]
    assert kept["state"] == "output-available" and json.loads(ran["output"]) == kept["output"]
    assert set(kept["output"]) == {"words", "characters"}
    assert approved[9]["text"] == _texts(history[9]) == generations[4]["text"]
    # Pane 2 sent the decision and read the rest live. Pane 1 follows it from the chat's
    # lifecycle feed: live too, or, when the rest had ended before it read the chat,
    # from the chat's status (no finish reason).
    assert [p["outcome_text"] for p in result["approved"]] in (
        ["finished: stop"] * 2,
        ["finished", "finished: stop"],
    )

    # 6. A new chat: a new id in the address, empty panes, no request of the chat API.
    new = result["new_chat"]
    assert new["chat_id"] != chat and new["address"].endswith(f"#chat={new['chat_id']}")
    assert [p["messages"] for p in new["panes"]] == [[], []]
    assert not [r for r in requests if r["phase"] == "new chat"], requests

    assert result["page_errors"] == []
    assert result["http_errors"] == []
    others = [e for e in result["console_errors"] if not e["url"].endswith("/favicon.ico")]
    assert others == [], others
    width, height = png_size(screenshot)
    assert width >= 1000 and height >= 600, (width, height)
