"""CopilotKit's React chat (examples/copilotkit, ``@copilotkit/react-core`` v2 bundled with
esbuild) in Debian's Chromium, with no backend of its own: its runtime URL is the
broadcaster's ``/v1/agui``. A message sent, the answer streamed from the worker (the real
``anthropic`` SDK against the local fake Anthropic API), the page reloaded while the answer
is held mid-way, and the answer resumed after the reload (``connect``: the thread's
history as ``MESSAGES_SNAPSHOT``, then the running answer), shown once
(tests/clients/browser/copilotkit.mjs drives the page).

Needs Chromium, node >= 20 and the npm packages of examples/copilotkit and
tests/clients/browser (``make test-deps``); without them the test fails and says so.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import finish_node_script, missing_prerequisites, start_node_script
from tests.support.fake_anthropic import gate, message, text
from tests.support.procs import ROOT
from tests.support.stacks import Stack, anthropic_stack

EXAMPLE = ROOT / "examples" / "copilotkit"
SCRIPT = ROOT / "tests" / "clients" / "browser" / "copilotkit.mjs"
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
