"""CopilotKit's React chat (examples/copilotkit, ``@copilotkit/react-core`` v2 bundled with
esbuild) in Debian's Chromium, with no backend of its own: its runtime URL is the
broadcaster's ``/v1/agui``. One stack for the module: a worker on the real ``anthropic``
SDK against the local fake Anthropic API, with the tools of tests/support/worker_tools.py
(``approved_add`` waits for a person). Shown in the page, each message once:

- a message sent, the answer streamed, the page reloaded while the answer is held
  mid-way, and the answer resumed after the reload (``connect``: the thread's history as
  ``MESSAGES_SNAPSHOT``, then the running answer): tests/clients/browser/copilotkit.mjs;
- a second tab of the same browser opened on the thread while its answer runs: it
  follows the answer to its end (copilotkit_tabs.mjs);
- CopilotKit's stop button on a running answer: the generation ends ``cancelled``, the
  partial answer stays, and the thread goes on (copilotkit_stop.mjs);
- an approval: the run ends with an AG-UI interrupt, the example's ``useInterrupt`` shows
  Approve / Deny; Approve sends ``resume`` and the tool runs, Deny sends it ``cancelled``
  and the tool does not run; either way the answer goes on (copilotkit_approval.mjs).

Needs Chromium, node >= 20 and the npm packages of examples/copilotkit and
tests/clients/browser (``make test-deps``); without them the test fails and says so.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import node_host, worker_tools
from tests.support.anthropic_scripts import Script
from tests.support.browser import (
    chromium_socket_dir,
    missing_prerequisites,
    start_node_script,
)
from tests.support.fake_anthropic import gate, message, text, tool_use
from tests.support.node_script import Script as NodeScript
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.shared_chromium import ENV as SHARED_CHROMIUM
from tests.support.stacks import Stack, anthropic_stack

EXAMPLE = ROOT / "examples" / "copilotkit"
OWN_BROWSER = {SHARED_CHROMIUM: ""}
"""The scripts launch a Chromium of their own, in the test's profile: on the test process's
shared one (over the DevTools protocol) the example's pages ran slower under ``chromium
--headless``, and under the headless shell the module costs no less there (docs/testing.md)."""
BROWSER = ROOT / "tests" / "clients" / "browser"
SCRIPT = BROWSER / "copilotkit.mjs"
TABS = BROWSER / "copilotkit_tabs.mjs"
STOP = BROWSER / "copilotkit_stop.mjs"
APPROVAL = BROWSER / "copilotkit_approval.mjs"
RUNS = "runs.jsonl"
"""The worker's tool runs (``TOOL_RUNS_FILE``), in the stack's folder."""
WORDS = ["Streaming ", "through ", "the ", "broadcaster, ", "resumed ", "after ", "reloading."]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if not (EXAMPLE / "node_modules" / "@copilotkit" / "react-core").is_dir():
        missing.append("npm ci --prefix examples/copilotkit (make test-deps)")
    if missing:
        pytest.fail("the CopilotKit test needs:\n  " + "\n  ".join(missing), pytrace=False)
    built = subprocess.run(
        ["npm", "run", "--silent", "build"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"the example's build failed:\n{built.stderr[-3000:]}"
    tmp = tmp_path_factory.mktemp("copilotkit")
    env = {
        "WORKER_MERGE_MS": "0",
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / RUNS),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp, env) as s:
        yield s


def runs_file(stack: Stack) -> Path:
    assert stack.root is not None
    return stack.root / RUNS


@pytest.mark.timeout(240)
def test_a_copilotkit_chat_resumes_its_answer_after_a_reload(stack: Stack, tmp_path: Path) -> None:
    opened = threading.Event()
    script = message([text(WORDS)], chunk_delay=0.05)
    stack.model.route("ck-reload", [*script[:6], gate(opened), *script[6:]])
    prompt, first, last = "ck-reload: say something", WORDS[0].strip(), WORDS[-1]
    args = [stack.url, str(tmp_path / "copilotkit.png"), str(tmp_path / "profile"), "ck-thread-1"]
    node = start_node_script(SCRIPT, [*args, prompt, first, last], OWN_BROWSER)
    try:
        assert node.stdout is not None
        line = node.stdout.readline()  # RELOADED, once the page shows the answer again
    finally:
        opened.set()
    code, out, err = node_host.finish(node, 150)
    assert code == 0 and line == "RELOADED\n", f"{line}{out}\n{err}\n{stack.logs()}"
    page = json.loads(out.strip().splitlines()[-1])
    assert page["pageErrors"] == [], page["pageErrors"]
    assert page["prompts"] == 1 and page["firsts"] == 1 and page["lasts"] == 1, page["text"]
    assert "".join(WORDS) in page["text"].replace("\n", "")
    calls = page["requests"]
    assert "GET /v1/agui/info" in calls and "POST /v1/agui/agent/default/run" in calls
    assert "POST /v1/agui/agent/default/connect" in calls


def held(words: list[str], shown: int, opened: threading.Event) -> Script:
    """A streamed text answer of ``words`` that stops after its first ``shown`` words until
    ``opened`` is set (each word a delta after a short delay)."""
    steps = message([text(words)], chunk_delay=0.05)
    cut = 2 + 2 * shown  # message_start, the block's start, then a delay and a delta a word
    return [*steps[:cut], gate(opened), *steps[cut:]]


def node_script(stack: Stack, tmp_path: Path, script: Path, *args: str) -> NodeScript:
    """A browser script on the module's stack, in a profile of the test's own."""
    shot, profile = tmp_path / f"{script.stem}.png", tmp_path / "profile"
    base = [stack.url, str(shot), str(profile)]
    return NodeScript(
        ["node", str(script), *base, *args],
        tmp_path / f"{script.stem}.stderr",
        profile=profile,
        env=OWN_BROWSER,
    )


def chat(stack: Stack, thread: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.url}/v1/chat/{thread}/messages").json()
    return found


def generation_status(stack: Stack, generation: str) -> str:
    found: str = httpx.get(f"{stack.url}/v1/generations/{generation}").json()["status"]
    return found


def texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A chat's UI messages as (role, their text parts joined)."""
    joined = (
        "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text") for m in messages
    )
    return [(m["role"], t) for m, t in zip(messages, joined, strict=True)]


@pytest.mark.timeout(240)
def test_a_second_tab_on_the_thread_follows_the_running_answer(
    stack: Stack, tmp_path: Path
) -> None:
    """Tab 2 (a second page of the same browser) opens the thread while tab 1's answer is
    held mid-way: it shows the thread so far through ``connect``, then the rest live, and
    both tabs end with the whole answer, each message once."""
    opened = threading.Event()
    words = ["Two ", "tabs ", "follow ", "one ", "answer ", "to ", "its ", "end."]
    stack.model.route("ck-tabs", held(words, 2, opened))
    prompt, first, last = "ck-tabs: say something", words[0].strip(), words[-1]
    script = node_script(stack, tmp_path, TABS, "ck-thread-tabs", prompt, first, last)
    try:
        joined = script.next_json(timeout=150)
        assert joined["phase"] == "joined", joined
        assert last not in joined["text"], "the answer was held: tab 2 joined it mid-way"
        opened.set()
        script.send("go")
        result = script.next_json(timeout=150)
    finally:
        opened.set()
        script.stop()
    left = chromium_socket_dir(tmp_path / "profile")  # removed by the script's clean-up
    assert left is None or not left.exists(), f"Chromium's socket folder left behind: {left}"
    assert result["phase"] == "result", result
    whole = "".join(words)
    for n, tab in enumerate(result["tabs"], 1):
        assert tab["pageErrors"] == [], (n, tab["pageErrors"])
        assert (tab["prompts"], tab["firsts"], tab["lasts"]) == (1, 1, 1), (n, tab["text"])
        assert whole in tab["text"].replace("\n", ""), (n, tab["text"])
    one, two = (tab["requests"] for tab in result["tabs"])
    assert one.count("POST /v1/agui/agent/default/run") == 1
    assert "POST /v1/agui/agent/default/connect" in two
    assert "POST /v1/agui/agent/default/run" not in two  # tab 2 only followed
    listed = chat(stack, "ck-thread-tabs")
    assert listed["status"] == "completed"
    assert texts(listed["messages"]) == [("user", prompt), ("assistant", whole)]


@pytest.mark.timeout(240)
def test_copilotkits_stop_button_stops_the_answer_and_the_thread_goes_on(
    stack: Stack, tmp_path: Path
) -> None:
    """The chat's stop button (CopilotKit posts ``/stop/{threadId}``) on an answer held
    mid-way: the generation ends ``cancelled``, the page keeps the partial answer once with
    no error, and the next message in the thread is answered as usual."""
    opened = threading.Event()
    words = ["Stopped ", "right ", "here ", "NEVER-SHOWN ", "words."]
    stack.model.route("ck-stop", held(words, 3, opened))
    stack.model.route("ck-after", message([text(["Answered ", "after ", "the ", "stop."])]))
    thread, prompt, prompt2 = "ck-thread-stop", "ck-stop: talk", "ck-after: go on"
    # Stopped once all the words before the hold are on the page: at the first, the rest
    # may still be on their way, and the stop would keep less than the test checks.
    first = "Stopped right here"
    script = node_script(stack, tmp_path, STOP, thread, prompt, first, prompt2, "the stop.")
    try:
        stopped = script.next_json(timeout=150)
        assert stopped["phase"] == "stopped" and stopped["stopStatus"] == 202, stopped
        generation = stopped["generation"]
        wait_for(
            f"{generation} to end cancelled",
            lambda: generation_status(stack, generation) == "cancelled",
            context=stack.logs,
        )
        assert "NEVER-SHOWN" not in stopped["text"]
        assert chat(stack, thread)["status"] == "cancelled"
        script.send("go")
        result = script.next_json(timeout=150)
    finally:
        opened.set()
        script.stop()
    assert result["phase"] == "result", result
    assert result["pageErrors"] == [], result["pageErrors"]
    page = (result["prompts"], result["firsts"], result["prompts2"], result["answers2"])
    assert page == (1, 1, 1, 1), result["text"]
    assert "Stopped right here" in result["text"] and "NEVER-SHOWN" not in result["text"]
    assert f"POST /v1/agui/agent/default/stop/{thread}" in result["requests"]
    listed = chat(stack, thread)
    assert listed["status"] == "completed" and listed["generation_id"] != generation
    said = texts(listed["messages"])
    assert [role for role, _ in said] == ["user", "assistant", "user", "assistant"], said
    assert said[1][1].startswith("Stopped right here") and "NEVER" not in said[1][1]
    assert said[3] == ("assistant", "Answered after the stop.")


def decided_in_page(
    stack: Stack, tmp_path: Path, n: int, button: str, answer: list[str]
) -> dict[str, Any]:
    """A message whose answer calls ``approved_add`` (a tool that waits for a person),
    sent in the example, the approval decided with its ``button`` (``approve`` or
    ``deny``), then ``answer``: the page's result. Checked on the way:
    the generation waits, the tool has not run, and the page shows the call."""
    tool_id = f"toolu_ck{n}"
    call = tool_use(tool_id, "approved_add", ['{"a": 2, ', '"b": 5}'])
    prompt = f"ck-approve-{n}: add 2 and 5"
    stack.model.route(prompt, message([text(["Adding."]), call], stop_reason="tool_use"))
    stack.model.route(tool_id, message([text(answer)]))  # the request that carries its result
    thread, last = f"ck-thread-approve-{n}", "".join(answer[-2:])
    runs = runs_file(stack)
    started = worker_tools.runs(runs, "approved_add", "start")
    script = node_script(stack, tmp_path, APPROVAL, thread, prompt, last, button)
    try:
        asked = script.next_json(timeout=150)
        assert asked["phase"] == "asked", asked
        generation: str = asked["generation"]
        assert generation_status(stack, generation) == "waiting"
        assert worker_tools.runs(runs, "approved_add", "start") == started, "not before a decision"
        assert "approved_add" in asked["text"] and '"a": 2' in asked["text"], asked["text"]
        script.send("go")
        result = script.next_json(timeout=150)
    finally:
        script.stop()
    assert result["phase"] == "result", result
    assert result["pageErrors"] == [], result["pageErrors"]
    assert (result["prompts"], result["answers"], result["approvals"]) == (1, 1, 0), result["text"]
    wait_for(
        f"{generation} to complete",
        lambda: generation_status(stack, generation) == "completed",
        context=stack.logs,
    )
    listed = chat(stack, thread)
    assert listed["generation_id"] == generation  # the same answer, gone on
    return result


def the_call(stack: Stack, n: int) -> dict[str, Any]:
    """The ``approved_add`` part of thread ``n``'s answer, as the chat records it."""
    parts = chat(stack, f"ck-thread-approve-{n}")["messages"][-1]["parts"]
    (tool,) = [p for p in parts if p["type"] == "tool-approved_add"]
    return dict(tool)


@pytest.mark.timeout(240)
def test_an_approval_shows_in_copilotkit_and_approving_runs_the_tool(
    stack: Stack, tmp_path: Path
) -> None:
    """A tool that waits for a person ends the run with an AG-UI interrupt; the example's
    ``useInterrupt`` shows Approve / Deny; Approve sends the next run with ``resume``, the
    worker runs the tool, and the answer goes on in the same generation."""
    ran = worker_tools.runs(runs_file(stack), "approved_add")
    result = decided_in_page(stack, tmp_path, 1, "approve", ["The ", "sum ", "is ", "seven."])
    first, second = result["runs"]
    assert first["resume"] is None
    (decision,) = second["resume"]
    assert decision["status"] == "resolved" and decision["payload"] == {"approved": True}
    assert decision["interruptId"].startswith("apr_"), decision
    assert worker_tools.runs(runs_file(stack), "approved_add") == ran + 1
    tool = the_call(stack, 1)
    assert tool["output"] == {"sum": 7} and tool["approval"]["approved"] is True


@pytest.mark.timeout(240)
def test_denying_in_copilotkit_skips_the_tool_and_the_answer_goes_on(
    stack: Stack, tmp_path: Path
) -> None:
    """Deny (``useInterrupt``'s ``cancel``) sends ``resume`` with ``cancelled``: the tool
    does not run, the model is told so, and its answer goes on in the same generation."""
    runs = runs_file(stack)
    before = worker_tools.runs(runs, "approved_add", "start")
    result = decided_in_page(stack, tmp_path, 2, "deny", ["Not ", "adding ", "then."])
    (decision,) = result["runs"][1]["resume"]
    assert decision["status"] == "cancelled" and "payload" not in decision, decision
    assert worker_tools.runs(runs, "approved_add", "start") == before
    tool = the_call(stack, 2)
    assert tool["state"] == "output-denied" and tool["approval"]["approved"] is False, tool
