"""Generations and chats read by AG-UI's own client: tests/clients/agui/agui.mjs.

The stack is real processes: a Redis server of the test's own, a front-end and a worker on
the real ``anthropic`` SDK against the local fake Anthropic API (with the tools of
tests/support/worker_tools.py, one of which waits for a person). Every AG-UI stream goes
through ``@ag-ui/client``'s SSE parser and ``verifyEvents`` (the runs through
``HttpAgent.runAgent``, its middlewares and its message state): text, reasoning with its
signature, tool calls, an approval through an interrupt and ``resume``, a stop, a
connection cut mid-message and resumed with ``Last-Event-ID`` (inside a chunk too), a run
whose POST dropped, followed by a second client; and the same generation read by the AI
SDK's reader (tests/clients/aisdk/read.mjs), unchanged.

Needs node >= 20 and the npm packages of tests/clients/agui and tests/clients/aisdk
(``make test-deps``); without them the test fails and says so. It never skips.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import node_host
from tests.support.fake_anthropic import (
    gate,
    message,
    text,
    thinking,
    tool_use,
)
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.stacks import Stack, anthropic_stack

AGUI_DIR = ROOT / "tests" / "clients" / "agui"
SCRIPT = AGUI_DIR / "agui.mjs"
AISDK = ROOT / "tests" / "clients" / "aisdk" / "read.mjs"
SIGNATURE = "sig-agui-1"
REASONING = ["Let me ", "think."]
WORDS = ["Hé", "llo, ", "wörld ", "🙂 ", "again."]


def _missing() -> list[str]:
    needed = {
        AGUI_DIR / "node_modules" / "@ag-ui" / "client" / "package.json": "tests/clients/agui",
        ROOT / "tests/clients/aisdk/node_modules/ai/package.json": "tests/clients/aisdk",
    }
    return [f"npm ci --prefix {d} (make test-deps)" for f, d in needed.items() if not f.is_file()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = _missing()
    if missing:
        pytest.fail("the AG-UI client tests need:\n  " + "\n  ".join(missing), pytrace=False)
    tmp = tmp_path_factory.mktemp("agui")
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / "runs.jsonl"),
        "PYTHONPATH": str(ROOT),
        "WORKER_MERGE_MS": "0",  # one event per delta: cuts between two deltas
    }
    with anthropic_stack(tmp, env) as s:
        yield s


def node(stack: Stack, script: Path, *args: str) -> dict[str, Any]:
    code, out, err = node_host.run(script, list(args), timeout=90)
    assert code == 0, f"{script.name} {args[:2]} exited {code}\n{err}\n{out}\n{stack.logs()}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def agui(stack: Stack, *args: str) -> dict[str, Any]:
    return node(stack, SCRIPT, *args)


def user(mid: str, words: str) -> str:
    return json.dumps([{"id": mid, "role": "user", "content": words}])


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def deltas(events: list[dict[str, Any]], kind: str = "TEXT_MESSAGE_CONTENT") -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


def generation_status(stack: Stack, generation: str) -> str:
    found: str = httpx.get(f"{stack.url}/v1/generations/{generation}").json()["status"]
    return found


def wait_status(stack: Stack, generation: str, wanted: str) -> None:
    wait_for(
        f"{generation} {wanted}",
        lambda: generation_status(stack, generation) == wanted,
        30,
        context=lambda: f"{generation_status(stack, generation)}\n{stack.logs()}",
    )


def test_info_names_the_agents_and_the_resumable_transport(stack: Stack) -> None:
    info = httpx.get(f"{stack.url}/v1/agui/info").json()
    assert {"default", "anthropic"} <= set(info["agents"])
    assert all(a["description"] for a in info["agents"].values())
    assert info["agents"]["default"]["capabilities"]["transport"]["resumable"] is True
    bad = httpx.post(f"{stack.url}/v1/agui/agent/default/run", json={"threadId": "x"})
    assert bad.status_code == 422 and "runId" in bad.text
    unknown = httpx.post(f"{stack.url}/v1/agui/agent/nobody/run", json={})
    assert unknown.status_code == 404
    nothing = {"threadId": "agui-none", "runId": "r", "messages": []}
    empty = httpx.post(f"{stack.url}/v1/agui/agent/default/connect", json=nothing)
    assert empty.status_code == 200 and empty.content == b""  # no run: an empty stream
    assert httpx.post(f"{stack.url}/v1/agui/agent/default/stop/agui-none").status_code == 404


def test_a_generation_reads_as_verified_agui_and_resumes_inside_a_message(
    stack: Stack,
) -> None:
    stack.model.enqueue(
        message(
            [
                thinking(REASONING, signature=SIGNATURE),
                text(WORDS),
                tool_use("toolu_01agui", "get_weather", ['{"city"', ': "Paris"}']),
            ],
            stop_reason="tool_use",
            chunk_delay=0.03,
        )
    )
    body = {"prompt": "Weather?", "max_tokens": 300}
    created = httpx.post(f"{stack.url}/v1/generations", json=body)
    assert created.status_code == 202, created.text
    gid = created.json()["id"]
    url = f"{stack.url}/v1/agui/generations/{gid}/events"
    live = agui(stack, "read", url)  # while the worker streams
    wait_status(stack, gid, "completed")
    whole = agui(stack, "read", url)
    for run in (live, whole):
        events = run["events"]
        assert kinds(events)[0] == "RUN_STARTED" and kinds(events)[-1] == "RUN_FINISHED"
        assert events[0]["runId"] == gid and events[0]["threadId"] == gid
        assert deltas(events) == "".join(WORDS)
        assert deltas(events, "REASONING_MESSAGE_CONTENT") == "".join(REASONING)
        (secret,) = [e for e in events if e["type"] == "REASONING_ENCRYPTED_VALUE"]
        assert secret["encryptedValue"] == SIGNATURE
        assert json.loads(deltas(events, "TOOL_CALL_ARGS")) == {"city": "Paris"}
    assert whole["events"] == live["events"] and whole["ids"] == live["ids"]
    # Cut after the second text delta: the rest, after the prelude, exactly once.
    cut = agui(stack, "read", url, "--cut-after-content", "2")
    held = cut["events"]
    rest = agui(stack, "read", url, "--last-event-id", cut["cutId"])["events"]
    reopened = kinds(rest)[: kinds(rest).index("TEXT_MESSAGE_CONTENT")]
    assert reopened == ["RUN_STARTED", "STEP_STARTED", "TEXT_MESSAGE_START"]
    assert deltas(held) + deltas(rest) == "".join(WORDS)
    tail = [e for e in whole["events"] if e not in held]
    assert rest[len(reopened) :] == whole["events"][len(held) :] and tail
    # A cut between two events of one chunk (reasoning-end: its message's end, its span's)
    inside = next(i for i in whole["ids"] if i and ":" in i)
    after = agui(stack, "read", url, "--last-event-id", inside)["events"]
    at = whole["ids"].index(inside)
    assert after[: len(after) - (len(whole["events"]) - at - 1)][0]["type"] == "RUN_STARTED"
    assert after[-(len(whole["events"]) - at - 1) :] == whole["events"][at + 1 :]
    # Resume points this route did not issue, and the end.
    assert httpx.get(url, headers={"last-event-id": "x"}).status_code == 400
    assert httpx.get(url, headers={"last-event-id": whole["ids"][-1]}).status_code == 204
    # The same generation, read by the AI SDK's own reader, as before.
    sdk = node(stack, AISDK, f"{stack.url}/v1/streams/{gid}/events")
    assert sdk["text"] == "".join(WORDS) and sdk["reasoning"] == "".join(REASONING)


def test_a_chat_run_through_http_agent(stack: Stack) -> None:
    stack.model.route("run-plain", message([text(["Hi ", "there."])]))
    run = agui(stack, "run", stack.url, "default", "agui-chat-1", user("u1", "run-plain hello"))
    assert run["status"] == 200 and run["generation"]
    events = run["events"]
    assert kinds(events)[0] == "RUN_STARTED" and events[0]["threadId"] == "agui-chat-1"
    assert events[-1]["type"] == "RUN_FINISHED" and events[-1]["outcome"]["type"] == "success"
    said = [m for m in run["messages"] if m["role"] == "assistant"]
    assert [m["content"] for m in said] == ["Hi there."]
    listed = httpx.get(f"{stack.url}/v1/chat/agui-chat-1/messages").json()
    assert listed["generation_id"] == run["generation"]
    assert listed["messages"][-1]["parts"][-1]["text"] == "Hi there."


def test_an_approval_is_an_interrupt_and_resume_decides_it(stack: Stack) -> None:
    call = tool_use("toolu_ag1", "approved_add", ['{"a": 2, "b": 5}'])
    stack.model.route("agui-approve", message([text(["Adding."]), call], stop_reason="tool_use"))
    stack.model.enqueue(message([text(["It is ", "7."])]))
    first = agui(stack, "run", stack.url, "default", "agui-chat-2", user("u1", "agui-approve"))
    ended = first["events"][-1]
    assert ended["type"] == "RUN_FINISHED" and ended["outcome"]["type"] == "interrupt"
    (interrupt,) = ended["outcome"]["interrupts"]
    assert interrupt["toolCallId"] == "toolu_ag1" and interrupt["reason"] == "tool_approval"
    assert generation_status(stack, first["generation"]) == "waiting"
    resume = json.dumps([{"interruptId": interrupt["id"], "status": "resolved"}])
    history = json.dumps(first["messages"])
    second = agui(stack, "run", stack.url, "default", "agui-chat-2", history, "--resume", resume)
    assert second["generation"] == first["generation"]
    events = second["events"]
    (snap,) = [e for e in events if e["type"] == "MESSAGES_SNAPSHOT"]
    assert snap["messages"] == first["messages"]  # the answer so far, as the client holds it
    (result,) = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert result["toolCallId"] == "toolu_ag1" and json.loads(result["content"]) == {"sum": 7}
    assert deltas(events) == "It is 7."
    assert events[-1]["outcome"] == {"type": "success"}


def test_a_stop_ends_the_run_cancelled(stack: Stack) -> None:
    opened = threading.Event()
    slow = message([text(["one ", "two ", "three "]), text(["never"])], chunk_delay=0.05)
    stack.model.route("agui-stop", [*slow[:-4], gate(opened), *slow[-4:]])
    try:
        run = agui(stack, "run", stack.url, "default", "agui-chat-3",
                   user("u1", "agui-stop now"), "--stop-after-content", "2")  # fmt: skip
    finally:
        opened.set()
    assert run["stopStatus"] == 202
    assert run["events"][-1]["outcome"] == {"type": "cancelled"}
    assert "never" not in deltas(run["events"])
    again = httpx.post(f"{stack.url}/v1/agui/agent/default/stop/agui-chat-3")
    assert again.status_code == 409


def test_a_run_goes_on_when_its_post_drops_and_a_second_client_follows(stack: Stack) -> None:
    opened = threading.Event()
    words = [f"w{i} " for i in range(8)]
    script = message([text(words)], chunk_delay=0.02)
    stack.model.route("agui-drop", [*script[:6], gate(opened), *script[6:]])
    body = json.dumps({"threadId": "agui-chat-4", "runId": "c1", "messages": []})
    connect = f"{stack.url}/v1/agui/agent/default/connect"
    try:
        dropped = agui(stack, "run", stack.url, "default", "agui-chat-4",
                       user("u1", "agui-drop"), "--abort-after-content", "1")  # fmt: skip
        assert dropped["generation"] and generation_status(stack, dropped["generation"]) in (
            "running",
            "queued",
        )
        follower = node_host.start(SCRIPT, ["read", connect, "--body", body])
        time.sleep(0.3)  # the follower joins while the model is held at the gate
    finally:
        opened.set()
    code, out, err = node_host.finish(follower, 90)
    assert code == 0, f"{err}\n{stack.logs()}"
    followed = json.loads(out.strip().splitlines()[-1])
    wait_status(stack, dropped["generation"], "completed")
    assert followed["generation"] == dropped["generation"]
    assert deltas(followed["events"]) == "".join(words)
    assert followed["events"][-1]["outcome"] == {"type": "success"}


def test_a_run_and_a_connect_open_with_the_threads_history(stack: Stack) -> None:
    thread = "agui-chat-5"
    stack.model.route("snap-one", message([text(["Hi ", "there."])]))
    stack.model.route("snap-two", message([text(["Sec", "ond ", "answer."])], chunk_delay=0.02))
    first = agui(stack, "run", stack.url, "default", thread, user("u1", "snap-one"))
    asked = [*first["messages"], {"id": "u2", "role": "user", "content": "snap-two"}]
    second = agui(stack, "run", stack.url, "default", thread, json.dumps(asked))
    assert kinds(second["events"])[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    snap = second["events"][1]["messages"]
    assert snap == asked  # the thread as the client sent it, its own ids, each turn once
    listed = httpx.get(f"{stack.url}/v1/chat/{thread}/messages").json()["messages"]
    assert [m["role"] for m in listed] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in second["messages"]][-1] == "Second answer."
    wait_status(stack, second["generation"], "completed")
    # A client with nothing (a reload): the history, then the answer, as the first has it.
    joined = agui(stack, "connect", stack.url, "default", thread)
    assert joined["status"] == 200
    assert kinds(joined["events"])[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert joined["events"][1]["messages"] == snap
    assert joined["messages"] == second["messages"]
    # Resumed inside the answer's text: the snapshot holds what was said up to the cursor.
    body = json.dumps({"threadId": thread, "runId": "c1", "messages": []})
    connect = f"{stack.url}/v1/agui/agent/default/connect"
    cut = agui(stack, "read", connect, "--body", body, "--cut-after-content", "1")
    resumed = agui(stack, "connect", stack.url, "default", thread, "--last-event-id", cut["cutId"])
    (snap,) = [e for e in resumed["events"] if e["type"] == "MESSAGES_SNAPSHOT"]
    assert snap["messages"][-1]["content"] == "Sec"
    assert deltas(resumed["events"]) == "ond answer."
    assert resumed["messages"] == second["messages"]
