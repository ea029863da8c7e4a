"""The chat routes driven by @ai-sdk/workflow's ``WorkflowChatTransport``, unmodified,
under the AI SDK 7's own ``Chat`` (tests/clients/workflow/chat.mjs): its POST without a
chat id, its ``x-workflow-run-id``, and its reconnects at
``GET /v1/chat/{runId}/stream?startIndex=N`` when an answer's connection drops.

Real processes: a Redis of the test's own, two front-ends behind nginx (deploy/nginx.conf,
which routes a run's reconnects by its chat), a worker on the real ``anthropic`` SDK
against the local fake Anthropic API, scripted per test; where an answer must still be
running, the script holds it at a gate the test opens. Needs node >= 20, nginx and the npm
packages of tests/clients/workflow (``npm ci --prefix tests/clients/workflow``); without
them the test fails and says so. It never skips.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import node_host
from tests.support.aisdk import last_json
from tests.support.fake_anthropic import (
    Script,
    gate,
    message,
    text,
    tool_use,
)
from tests.support.polling import wait_for
from tests.support.procs import ROOT, Proc
from tests.support.stacks import Stack, anthropic_stack
from tests.support.worker_tools import runs

WORKFLOW_DIR = ROOT / "tests" / "clients" / "workflow"
SCRIPT = WORKFLOW_DIR / "chat.mjs"
CHUNKS = ["Once ", "more, ", "with ", "feeling: ", "every ", "word ", "once."]


def missing_prerequisites() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    if not (WORKFLOW_DIR / "node_modules" / "@ai-sdk" / "workflow" / "package.json").is_file():
        missing.append(
            "tests/clients/workflow/node_modules is missing: run"
            " npm ci --prefix tests/clients/workflow (make test does this)"
        )
    return missing


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail(
            "the WorkflowChatTransport test needs:\n  " + "\n  ".join(missing), pytrace=False
        )
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp_path / "tool-runs.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp_path, env, frontends=2, nginx=True) as s:
        yield s


def node(mode: str, request: dict[str, Any]) -> node_host.Started:
    return node_host.start(SCRIPT, [mode], json.dumps(request))


def result(proc: node_host.Started, stack: Stack) -> dict[str, Any]:
    found: dict[str, Any] = last_json(proc, stack, within=120)
    return found


def held(opened: threading.Event, after: int = 3) -> Script:
    """A text answer held at ``opened`` after ``after`` deltas."""
    script = message([text(CHUNKS)], input_tokens=5, output_tokens=len(CHUNKS))
    deltas = [i for i, s in enumerate(script) if getattr(s, "event", "") == "content_block_delta"]
    script.insert(deltas[after - 1] + 1, gate(opened))
    return script


def messages_of(stack: Stack, chat: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.api}/{chat}/messages", timeout=10).json()
    return found


def viewers(proc: Proc) -> int:
    try:
        count: int = httpx.get(f"{proc.url}/readyz", timeout=2).json()["viewers"]
    except httpx.HTTPError:
        return -1
    return count


def test_a_dropped_answer_is_finished_by_the_transport(stack: Stack) -> None:
    """The front-end streaming the POST's answer is killed (SIGKILL) mid-answer: the
    transport reconnects with the run id and the chunks it has, lands on the other
    front-end, and the Chat ends with exactly the answer an uninterrupted read gets."""
    opened = threading.Event()
    stack.model.route("drop-me", held(opened))
    chat = "chat-dropped"
    shown = stack.root / "shown"
    request = {"api": stack.api, "chatId": chat, "text": "drop-me", "body": {"id": chat}}
    sender = node("send", {**request, "textFile": str(shown)})
    try:
        # The Chat itself shows the first words: it holds some chunks of the POST.
        wait_for("the answer's first words in the Chat", shown.exists, context=stack.logs)
        serving = [f for f in stack.frontends if viewers(f) == 1]
        assert len(serving) == 1, [viewers(f) for f in stack.frontends]
        serving[0].stop(signal.SIGKILL)
    finally:
        opened.set()
    sent = result(sender, stack)
    assert sent["status"] == "ready", sent
    post, *reconnects = sent["requests"]
    assert post["method"] == "POST" and post["status"] == 200
    chat_id, generation, base = post["runId"].split("~")
    assert (chat_id, base) == (chat, "0")
    assert reconnects, "the transport never reconnected"
    first = reconnects[0]
    assert first["url"].startswith(f"{stack.api}/{chat}~{generation}~0/stream?startIndex=")
    assert int(first["url"].rsplit("=", 1)[1]) > 0  # it held some chunks already
    assert all(r.get("status") == 200 for r in reconnects), reconnects
    asked, answer = sent["messages"]
    assert asked["role"] == "user" and answer["role"] == "assistant"
    assert [p["type"] for p in answer["parts"]] == ["step-start", "text"]  # no duplicate
    assert answer["parts"][1]["text"] == "".join(CHUNKS)
    # What an uninterrupted read of the same answer makes of it: the server's own fold,
    # and the transport reading the whole run again from its first chunk.
    alive = next(f for f in stack.frontends if f.alive())
    listed = httpx.get(f"{alive.url}/v1/chat/{chat}/messages", timeout=10).json()
    assert listed["messages"][-1] == answer
    again = result(
        node("reconnect", {"api": stack.api, "chatId": post["runId"], "startIndex": 0}), stack
    )
    assert again["message"]["parts"] == answer["parts"]
    assert sent["finishes"] == [{"isAbort": False, "isError": False, "finishReason": "stop"}]


def test_start_index_positive_and_negative_through_the_transport(stack: Stack) -> None:
    stack.model.route("count-me", message([text(CHUNKS)]))
    chat = "chat-indexes"
    sent = result(
        node("send", {"api": stack.api, "text": "count-me", "body": {"chatId": chat}}), stack
    )
    (post,) = sent["requests"]
    run = post["runId"]
    assert post["chatId"] == chat and run.startswith(f"{chat}~")
    whole = result(node("reconnect", {"api": stack.api, "chatId": run, "startIndex": 0}), stack)
    chunks = whole["chunks"]
    types = [c["type"] for c in chunks]
    assert types[0] == "start" and types[-1] == "finish"
    assert whole["requests"][0]["tailIndex"] == str(len(chunks) - 1)
    later = result(node("reconnect", {"api": stack.api, "chatId": run, "startIndex": 3}), stack)
    # Chunk 3 is the text's delta (the worker merged them): the transport puts back the
    # text-start it did not ask for (its framing repair), then the server's chunks 3 on.
    assert types[2:5] == ["text-start", "text-delta", "text-end"]
    assert later["chunks"] == [chunks[2], *chunks[3:]]
    assert later["requests"][0]["url"].endswith("?startIndex=3")
    tail = result(node("reconnect", {"api": stack.api, "chatId": run, "startIndex": -4}), stack)
    # The last 4 chunks start inside the text: the server rewinds to its text-start, and
    # the tail index it answers makes the transport count from there (its orphan filter
    # drops nothing, and warns of nothing).
    assert types[-4] == "text-delta"
    assert tail["requests"][0]["tailIndex"] == str(2 + 4 - 1)
    assert tail["chunks"] == chunks[2:] and tail["warnings"] == []
    assert tail["ends"] == [len(chunks)]
    # By chat id, as useChat({resume: true}) does with this transport: the latest answer.
    by_chat = result(node("reconnect", {"api": stack.api, "chatId": chat, "startIndex": 0}), stack)
    assert by_chat["chunks"] == chunks


def test_the_logs_hold_no_traceback(stack: Stack) -> None:
    assert "Traceback" not in stack.logs(), stack.logs()


def test_two_tabs_one_approves_both_see_the_output_and_the_continuation(stack: Stack) -> None:
    """Two AI SDK 7 Chats on one chat; the tool the model calls needs approval. The first
    tab's answer ends at the wait (``finish``), the second (resumed by chat id) stays on
    the generation; the first answers with ``addToolApprovalResponse`` and its
    ``sendAutomaticallyWhen`` request carries the decision: the tool runs once and both
    tabs show its output and the model's next step, in the same assistant message."""
    calls = message(
        [text(["Adding."]), tool_use("toolu_tabs", "approved_add", ['{"a": 4, "b": 5}'])],
        stop_reason="tool_use",
    )
    stack.model.route("tabs-approve", calls)
    # The next call's last message is the tool's result: it takes the queue's script.
    stack.model.enqueue(message([text(["The sum ", "is 9."])]))
    chat = "chat-tabs"
    request = {
        "api": stack.api,
        "chatId": chat,
        "text": "tabs-approve: add 4 and 5",
        "body": {"id": chat},
        "decide": {"approved": True},
        "expectText": "is 9.",
        "tabs": 2,
    }
    got = result(node("approve", request), stack)
    assert got["asked"]["state"] == "approval-requested"
    first, second = got["tabs"]
    answer_1, answer_2 = first[-1], second[-1]
    assert answer_1["id"] == answer_2["id"]  # one assistant message, continued

    def without_approval(message_: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.items() if k != "approval"} for p in message_["parts"]]

    assert without_approval(answer_1) == without_approval(answer_2)
    kinds = [p["type"] for p in answer_1["parts"]]
    assert kinds == ["step-start", "text", "tool-approved_add", "step-start", "text"], kinds
    tool = answer_1["parts"][2]
    assert tool["state"] == "output-available" and tool["output"] == {"sum": 9}
    assert tool["approval"]["approved"] is True  # the deciding tab's own record
    assert answer_1["parts"][-1]["text"] == "The sum is 9."
    assert runs(stack.root / "tool-runs.jsonl", "approved_add") == 1
    posts = [r for r in got["requests"] if r["method"] == "POST"]
    assert [r["tab"] for r in posts] == [0, 0] and all(r["status"] == 200 for r in posts)
    # The decision's answer started where the generation waited: its run id's base.
    base = int(posts[1]["runId"].rsplit("~", 1)[1])
    assert base > 0 and posts[1]["runId"].split("~")[1] == posts[0]["runId"].split("~")[1]
    listed = messages_of(stack, chat)
    assert listed["status"] == "completed"
    assert without_approval(listed["messages"][-1]) == without_approval(answer_1)
