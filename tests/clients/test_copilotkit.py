"""CopilotKit's React chat (examples/copilotkit, ``@copilotkit/react-core`` v2 bundled with
esbuild) in Debian's Chromium, with no backend of its own: its runtime URL is the
broadcaster's ``/v1/agui``. One stack for the module: a worker on the real ``anthropic``
SDK against the local fake Anthropic API. Shown in the page, each message once:

- a message sent, the answer streamed, the page reloaded while the answer is held
  mid-way, and the answer resumed after the reload (``connect``: the thread's history as
  ``MESSAGES_SNAPSHOT``, then the running answer): tests/clients/browser/copilotkit.mjs;
- a second tab of the same browser opened on the thread while its answer runs: it
  follows the answer to its end (copilotkit_tabs.mjs);
- CopilotKit's stop button on a running answer: the generation ends ``cancelled``, the
  partial answer stays, and the thread goes on (copilotkit_stop.mjs).

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

from tests.support.anthropic_scripts import Script
from tests.support.browser import finish_node_script, missing_prerequisites, start_node_script
from tests.support.fake_anthropic import gate, message, text
from tests.support.node_script import Script as NodeScript
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.stacks import Stack, anthropic_stack

EXAMPLE = ROOT / "examples" / "copilotkit"
BROWSER = ROOT / "tests" / "clients" / "browser"
SCRIPT = BROWSER / "copilotkit.mjs"
TABS = BROWSER / "copilotkit_tabs.mjs"
STOP = BROWSER / "copilotkit_stop.mjs"
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
    with anthropic_stack(tmp, {"WORKER_MERGE_MS": "0"}) as s:
        yield s


@pytest.mark.timeout(240)
def test_a_copilotkit_chat_resumes_its_answer_after_a_reload(stack: Stack, tmp_path: Path) -> None:
    opened = threading.Event()
    script = message([text(WORDS)], chunk_delay=0.05)
    stack.model.route("ck-reload", [*script[:6], gate(opened), *script[6:]])
    prompt, first, last = "ck-reload: say something", WORDS[0].strip(), WORDS[-1]
    args = [stack.url, str(tmp_path / "copilotkit.png"), str(tmp_path / "profile"), "ck-thread-1"]
    node = start_node_script(SCRIPT, [*args, prompt, first, last])
    try:
        assert node.stdout is not None
        line = node.stdout.readline()  # RELOADED, once the page shows the answer again
    finally:
        opened.set()
    code, out, err = finish_node_script(node, 150)
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
    return NodeScript(["node", str(script), *base, *args], tmp_path / f"{script.stem}.stderr")


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
    script = node_script(stack, tmp_path, STOP, thread, prompt, "Stopped", prompt2, "the stop.")
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
