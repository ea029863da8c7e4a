"""The client package (clients/js, installed from the checkout into tests/clients/usechat)
in Node against real front-ends: two front-ends of one Redis behind nginx (configured by
deploy/nginx.conf), a worker with the fake provider slowed so that an answer takes
seconds. The front-end that serves a reader is killed (SIGKILL) mid-stream:

- ``followStream`` goes on through nginx on the other one, every event once and in order;
- the transport under the AI SDK's own Chat (ai 7's and ai 6's AbstractChat): the answer
  goes on after its last event (as its run), and the message holds the generation's text,
  its text part once;
- and on a whole stack: ``stop()`` also stops the model (the generation ends
  ``cancelled``, its stream with ``abort``), and each submit carries an Idempotency-Key.

Needs nginx, node >= 20 and the npm packages of tests/clients/usechat and clients/js
(``make test-deps``); without them the tests fail and say what to install."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import client_js, node_host
from tests.support.polling import wait_for
from tests.support.procs import ROOT, Proc
from tests.support.stacks import Stack, start_stack

USECHAT = ROOT / "tests" / "clients" / "usechat"
FOLLOW = USECHAT / "follow.mjs"
CHAT = USECHAT / "chat.mjs"
SLOW = {"WORKER_FAKE_DELAY_MS": "60"}


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    missing = client_js.missing_prerequisites()
    if not (USECHAT / "node_modules" / "ai6").is_dir():
        missing.append("tests/clients/usechat/node_modules: npm ci --prefix tests/clients/usechat")
    if missing:
        pytest.fail("these tests need:\n  " + "\n  ".join(missing), pytrace=False)
    client_js.build()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path, "clientjs", SLOW, frontends=2, nginx=True)
    try:
        yield s
    finally:
        # At once: the node host's idle connections to nginx would hold a graceful stop.
        if s.nginx is not None:
            s.nginx.stop(graceful=False)
        s.stop()


def _serving(stack: Stack) -> Proc:
    """The front-end that holds an open SSE response, once one does."""
    holding: list[Proc] = []

    def found() -> bool:
        ready = [(fe, httpx.get(f"{fe.url}/readyz", timeout=5).json()) for fe in stack.frontends]
        holding[:] = [fe for fe, r in ready if r.get("connections", 0) > 0]
        return bool(holding)

    wait_for("a front-end holding the reader", found, context=stack.logs)
    return holding[0]


def _kill_when(stack: Stack, generation: str, seq: int) -> Proc:
    """SIGKILL to the front-end serving the reader, once ``generation`` has ``seq`` events."""
    status = f"{stack.frontends[-1].url}/v1/generations/{generation}"
    wait_for(
        f"{generation} at event {seq}",
        lambda: httpx.get(status, timeout=5).json()["last_event_id"] >= seq,
        context=stack.logs,
    )
    victim = _serving(stack)
    victim.popen.kill()
    victim.popen.wait()
    return victim


def _generation_of(stack: Stack, chat_id: str) -> str:
    """The chat's generation, once its submit has made one."""
    messages = f"{stack.frontends[-1].url}/v1/chat/{chat_id}/messages"
    seen: list[str] = []

    def made() -> bool:
        got = httpx.get(messages, timeout=5)
        seen[:] = [got.json()["generation_id"]] if got.status_code == 200 else []
        return bool(seen and seen[0])

    wait_for(f"chat {chat_id} to have a generation", made, context=stack.logs)
    return seen[0]


def _alive(stack: Stack, dead: Proc) -> str:
    return next(fe.url for fe in stack.frontends if fe is not dead)


def test_follow_stream_goes_on_through_a_front_end_kill_every_event_once(stack: Stack) -> None:
    started = httpx.post(f"{stack.url}/v1/generations", json={"prompt": "tell me"}, timeout=10)
    generation = started.json()["id"]
    run = node_host.start(FOLLOW, [f"{stack.url}/v1/streams/{generation}/events"])
    victim = _kill_when(stack, generation, 8)
    code, out, err = node_host.finish(run, 90)
    assert code == 0, f"{err}\n{stack.logs()}"
    events = json.loads(out.strip().splitlines()[-1])["events"]
    seqs = [int(e["id"].split(".")[0]) for e in events]
    status = httpx.get(f"{_alive(stack, victim)}/v1/generations/{generation}", timeout=5).json()
    assert seqs == list(range(1, status["last_event_id"] + 1)), seqs
    assert events[-1]["type"] == "finish" and len(events) > 8


def _chat(stack: Stack, sdk: str, chat_id: str, **more: Any) -> node_host.Started:
    api = f"{stack.url}/v1/chat"
    request = {"api": api, "chatId": chat_id, "sdk": sdk, "text": "Hello", **more}
    return node_host.start(CHAT, [], json.dumps(request))


def _result(run: node_host.Started, stack: Stack) -> dict[str, Any]:
    code, out, err = node_host.finish(run, 90)
    assert code == 0, f"{err}\n{out}\n{stack.logs()}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("sdk", ["7", "6"])
def test_a_chat_answer_goes_on_through_a_front_end_kill_each_part_once(
    stack: Stack, sdk: str
) -> None:
    chat_id = f"kill-{sdk}-{time.monotonic_ns()}"
    run = _chat(stack, sdk, chat_id)
    generation = _generation_of(stack, chat_id)
    victim = _kill_when(stack, generation, 8)
    result = _result(run, stack)
    assert result["status"] == "ready" and result["error"] is None, result
    alive = _alive(stack, victim)
    status = httpx.get(f"{alive}/v1/generations/{generation}", timeout=5).json()
    assert status["status"] == "completed"
    user, answer = result["messages"]
    assert user["role"] == "user" and answer["role"] == "assistant"
    texts = [p for p in answer["parts"] if p["type"] == "text"]
    assert [p["text"] for p in texts] == [status["text"]], answer["parts"]
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    resumes = [r for r in result["requests"] if r["method"] == "GET"]
    # One submit (a server that wants the whole chat is told it again, same key).
    assert posts[-1]["status"] == 200 and posts[0]["key"], result["requests"]
    assert {p["key"] for p in posts} == {posts[0]["key"]}, result["requests"]
    assert resumes and all(r["lastEventId"] for r in resumes), result["requests"]
    assert resumes[-1]["path"].startswith(f"/v1/chat/{chat_id}~{generation}~0/stream?startIndex=")


@pytest.mark.parametrize("sdk", ["7", "6"])
def test_stop_also_stops_the_model(stack: Stack, sdk: str) -> None:
    chat_id = f"stop-{sdk}-{time.monotonic_ns()}"
    result = _result(_chat(stack, sdk, chat_id, stopAt=" "), stack)
    assert result["status"] == "ready" and result["error"] is None, result
    stops = [r for r in result["requests"] if r["path"] == f"/v1/chat/{chat_id}/stop"]
    assert [r["status"] for r in stops] == [202], result["requests"]
    got = httpx.get(f"{stack.url}/v1/chat/{chat_id}/messages", timeout=5).json()
    assert got["status"] == "cancelled", got
    events = httpx.get(f"{stack.url}/v1/streams/{got['generation_id']}/events", timeout=10)
    assert '"type":"abort"' in events.text
