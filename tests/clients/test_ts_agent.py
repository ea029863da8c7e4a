"""The TypeScript agent of examples/ts-agent, served through the worker protocol
(docs/worker-protocol.md): an agent written with the AI SDK's own
``streamText(...).toUIMessageStream()``, its model the local OpenAI-compatible Chat
Completions server, answering chats sent to ``/v1/chat`` with ``provider: "ts-agent"``.
The chats are read with the AI SDK's own client code (tests/clients/aisdk/chat.mjs:
``DefaultChatTransport`` and ``readUIMessageStream``).

Real processes throughout: a Redis server of the test's own, a front-end (no Python
worker: nothing else serves ``ts-agent``), the agent under node (``tsx``), and the fake
model server. Streams held mid-answer are held at a gate of the model's script, so
nothing depends on timing; the agent's JSON lines on stdout say what it did.

Needs node >= 20 and the npm packages of tests/clients/aisdk and examples/ts-agent
(``make test`` installs them); without them the test fails and says so.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import browser, node_host
from tests.support.aisdk import missing_prerequisites, node, result, run, user
from tests.support.fake_anthropic import gate
from tests.support.fake_openai import FakeOpenAIServer, reply
from tests.support.node_script import Script
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.stacks import Stack, start_stack

AGENT_DIR = ROOT / "examples" / "ts-agent"
LEASE_SECONDS = 1.5


@dataclass
class Deployment:
    stack: Stack
    model: FakeOpenAIServer
    agent: Script
    root: Path

    @property
    def api(self) -> str:
        return f"{self.stack.frontend.url}/v1/chat"

    def logs(self) -> str:
        return self.stack.logs() + self.agent.report()


def start_agent(deployment_root: Path, frontend: str, model: str, name: str) -> Script:
    tsx = AGENT_DIR / "node_modules" / "tsx" / "dist" / "esm" / "index.mjs"
    agent = Script(
        ["node", "--import", tsx.as_uri(), "agent.ts"],
        deployment_root / f"{name}.stderr",
        cwd=AGENT_DIR,
        env={
            "BROADCASTER_URL": frontend,
            "OPENAI_BASE_URL": model,
            "OPENAI_API_KEY": "test",
            "AGENT_PROVIDER": "ts-agent",
            # One job at a time: an agent paused mid-answer then has no claim in flight
            # that could take its own abandoned job back before the successor does.
            "AGENT_CONCURRENCY": "1",
        },
    )
    assert agent.next_json(60)["event"] == "ready", agent.report()
    return agent


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    missing = missing_prerequisites()
    if not (AGENT_DIR / "node_modules" / "tsx" / "package.json").is_file():
        missing.append(
            "examples/ts-agent/node_modules is missing: run npm ci --prefix examples/ts-agent"
            " (make test does this)"
        )
    if missing:
        pytest.fail("the TypeScript agent test needs:\n  " + "\n  ".join(missing), pytrace=False)
    root = tmp_path_factory.mktemp("ts-agent")
    env = {
        "BROADCASTER_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "BROADCASTER_WORKER_CLAIM_WAIT_SECONDS": "5",
    }
    with FakeOpenAIServer(api_key="test") as model:
        stack = start_stack(root, "ts-agent", None, frontend_env=env)
        try:
            agent = start_agent(root, stack.frontend.url, model.base_url, "agent")
            try:
                wait_for("the agent's provider to be live", lambda: live(stack), context=stack.logs)
                yield Deployment(stack, model, agent, root)
            finally:
                agent.stop()
        finally:
            stack.stop()
        assert model.errors == []


def live(stack: Stack) -> bool:
    providers = httpx.get(f"{stack.frontend.url}/readyz").json()["providers"]
    return bool(providers.get("ts-agent", {}).get("live_workers"))


def said(agent: Script, event: str, gid: str, within: float = 30) -> dict[str, Any]:
    """The agent's next line about ``gid`` that is ``event`` (its other lines skipped)."""
    while True:
        line = agent.next_json(within)
        if line.get("generation_id") == gid and line["event"] == event:
            return line


def request(d: Deployment, chat: str, words: str) -> dict[str, Any]:
    return {
        "api": d.api,
        "chatId": chat,
        "messages": [user(words)],
        "body": {"provider": "ts-agent"},
    }


def texts(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def shown(d: Deployment, chat: str) -> str:
    """The text of the chat's answer so far, as the front-end folds it."""
    listed = httpx.get(f"{d.api}/{chat}/messages").json().get("messages", [])
    return texts(listed[-1]) if listed and listed[-1]["role"] == "assistant" else ""


def test_the_answer_streams_to_the_ai_sdk(deployment: Deployment) -> None:
    d = deployment
    d.model.enqueue(reply(text=["Hello", " from", " TypeScript."]))
    before = len(d.model.requests)
    sent = run("send", request(d, "ts-chat", "Say hello"), d.stack)
    (post,) = sent["responses"]
    assert post["status"] == 200 and post["done"] is True
    gid = post["generation"]
    assert said(d.agent, "claimed", gid)["takeover"] is False
    assert said(d.agent, "finished", gid)["lost"] is None
    assert sent["chunk_types"][0] == "start" and sent["chunk_types"][-1] == "finish"
    message = sent["message"]
    assert message["id"] == gid and texts(message) == "Hello from TypeScript."
    # The agent's model call carried the chat, converted by the AI SDK.
    asked = d.model.requests[before].body
    assert asked["model"] == "gpt-4.1-mini" and asked["stream"] is True
    assert asked["messages"][-1] == {"role": "user", "content": "Say hello"}
    listed = httpx.get(f"{d.api}/ts-chat/messages").json()
    assert listed["status"] == "completed" and listed["messages"][-1] == message


def test_a_stop_reaches_the_agent_and_closes_its_model_call(deployment: Deployment) -> None:
    d = deployment
    never = threading.Event()
    d.model.enqueue([*reply(text=["Stop ", "me ", "now"])[:3], gate(never)])
    before = len(d.model.requests)
    ask = request(d, "ts-stop", "Go on")
    try:
        tab = node("send", ask)
        wait_for("the first text", lambda: shown(d, "ts-stop") == "Stop me ", context=d.logs)
        stopped = httpx.post(f"{d.api}/ts-stop/stop")
        assert stopped.status_code == 202, stopped.text
        sent = result(tab, d.stack)
        gid = sent["responses"][0]["generation"]
        # The agent learns it at its next renewal and aborts its model call.
        assert said(d.agent, "stopped", gid)["generation_id"] == gid
        assert d.model.wait_client_closed(before, timeout=30), "the model call stayed open"
    finally:
        never.set()
    assert sent["chunk_types"][-1] == "abort"
    assert texts(sent["message"]) == "Stop me "
    assert httpx.get(f"{d.api}/ts-stop/messages").json()["status"] == "cancelled"


def test_a_writer_paused_past_its_lease_is_fenced_and_its_successor_finishes(
    deployment: Deployment,
) -> None:
    """The agent stops (SIGSTOP: a pause, a partition) mid-answer; after its lease a
    second agent takes the job over from the stream and finishes the answer; the first,
    resumed, is refused (409 ``fenced``) and aborts its model call."""
    d = deployment
    never = threading.Event()
    d.model.enqueue([*reply(text=["One ", "two ", "three"])[:3], gate(never)])
    d.model.enqueue(reply(text=["three."]))
    before = len(d.model.requests)
    ask = request(d, "ts-lapse", "Count")
    successor: Script | None = None
    try:
        tab = node("send", ask)
        wait_for("the first text", lambda: shown(d, "ts-lapse") == "One two ", context=d.logs)
        os.kill(d.agent.popen.pid, signal.SIGSTOP)
        try:
            successor = start_agent(d.root, d.stack.frontend.url, d.model.base_url, "successor")
            sent = result(tab, d.stack)
            gid = sent["responses"][0]["generation"]
            assert said(successor, "claimed", gid)["takeover"] is True
            assert said(successor, "finished", gid)["lost"] is None
        finally:
            os.kill(d.agent.popen.pid, signal.SIGCONT)
        assert said(d.agent, "fenced", gid)["lost"] == "fenced"
        assert d.model.wait_client_closed(before, timeout=30), "the fenced call stayed open"
    finally:
        never.set()
        if successor is not None:
            successor.stop()
    assert sent["chunk_types"][-1] == "finish"
    assert texts(sent["message"]) == "One two three."
    # The successor continued the answer it was given: the model saw it as said so far.
    assert d.model.requests[before + 1].body["messages"][-1] == {
        "role": "assistant",
        "content": "One two ",
    }
    listed = httpx.get(f"{d.api}/ts-lapse/messages").json()
    assert listed["status"] == "completed" and texts(listed["messages"][-1]) == "One two three."


def test_the_demo_chat_in_chromium_resumes_stops_and_survives_a_killed_agent(
    deployment: Deployment,
) -> None:
    """The demo page's chat (the AI SDK's ``Chat``, tests/clients/browser/agent_chat.mjs)
    with ``?provider=ts-agent``: an answer held mid-way while the page reloads, resumed by
    both panes; a stop from the other pane that reaches the agent; and the agent's process
    killed (SIGKILL) mid-answer, a successor taking the answer over once the lease lapsed.
    The agent goes last in this module's deployment: the successor serves from then on."""
    d = deployment
    missing = browser.missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    held, never = threading.Event(), threading.Event()
    hello = reply(text=["Hello ", "from ", "the ", "browser."])
    d.model.enqueue([*hello[:3], gate(held), *hello[3:]])
    d.model.enqueue([*reply(text=["Stop ", "me ", "now"])[:3], gate(never)])
    d.model.enqueue([*reply(text=["One ", "two ", "three"])[:3], gate(never)])
    d.model.enqueue(reply(text=["three."]))
    profile = d.root / "chromium-profile"
    shot = browser.ARTIFACTS / "ts-agent-chat.png"
    browser.ARTIFACTS.mkdir(exist_ok=True)
    args = [d.stack.frontend.url, str(shot), str(profile), "ts-agent", "reload-held,stop,kill"]
    page = browser.start_node_script(browser.BROWSER_DIR / "agent_chat.mjs", args)
    lines: list[str] = []
    try:
        assert page.stdout is not None
        lines.append(page.stdout.readline())  # RELOADED: both panes resumed the held answer
        held.set()
        lines.append(page.stdout.readline())  # KILL: the third answer shows in both panes
        if lines == ["RELOADED\n", "KILL\n"]:
            d.agent.popen.kill()
            d.agent.popen.wait(10)
            d.agent = start_agent(d.root, d.stack.frontend.url, d.model.base_url, "taker")
        code, out, err = node_host.finish(page, timeout=150)
    finally:
        held.set()
        never.set()
        browser.stop_browser_leftovers(profile)
    assert lines == ["RELOADED\n", "KILL\n"] and code == 0, f"{lines}{err}\n{out}\n{d.logs()}"
    got = json.loads(out.strip().splitlines()[-1])
    assert {p["provider"] for p in got["posts"]} == {"ts-agent"}
    for pane in got["resumed"]:  # after the reload, mid-answer, in both panes
        assert pane["status"] == "streaming" and pane["messages"][1]["text"] == "Hello from "
    for when, text, outcome in (
        ("first", "Hello from the browser.", "finish"),
        ("stopped", "Stop me ", "abort"),
        ("takeover", "One two three.", "finish"),
    ):
        for pane in got[when]:
            assert pane["outcome"] == outcome and pane["error"] == "", (when, pane)
            assert pane["messages"][-1]["text"] == text, (when, pane)
    gid = latest_generation(d, got["chat_id"])
    assert said(d.agent, "claimed", gid)["takeover"] is True  # the successor took it over
    assert said(d.agent, "finished", gid)["lost"] is None
    assert got["pageErrors"] == [] and got["httpErrors"] == [], got


def latest_generation(d: Deployment, chat: str) -> str:
    """The chat's latest generation."""
    return str(httpx.get(f"{d.api}/{chat}/messages").json()["generation_id"])


def test_the_logs_hold_no_traceback(deployment: Deployment) -> None:
    assert "Traceback" not in deployment.stack.frontend.log(), deployment.logs()
