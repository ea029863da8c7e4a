"""A resume from a run's tail (``GET /v1/chat/{runId}/stream?startIndex=-k``) that lands
inside a part is served from that part's start, with the ``x-workflow-stream-tail-index``
that keeps ``WorkflowChatTransport``'s count of chunks exact: driven by the transport as
published before 1.0.17 (tests/clients/workflow-old: no orphan filter, it crashed on such a
resume) and today's (tests/clients/workflow: it dropped the part's chunks with a warning).

Real processes, one stack for the module: a Redis of its own, a front-end, a worker on the
real ``anthropic`` SDK against the local fake Anthropic API (each delta its own event).
Needs node >= 20 and the npm packages of both folders (``make test-deps``); without them
the test fails and says so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import node_host
from tests.support.fake_anthropic import message, text, thinking, tool_use
from tests.support.procs import ROOT
from tests.support.stacks import Stack, anthropic_stack

NEW = ROOT / "tests" / "clients" / "workflow" / "chat.mjs"
OLD = ROOT / "tests" / "clients" / "workflow-old" / "reconnect.mjs"
THOUGHT = ["Let ", "me ", "think."]
WORDS = ["Every ", "word ", "of ", "this ", "answer ", "comes ", "once."]


def missing_prerequisites() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    for script in (NEW, OLD):
        folder = script.parent
        if not (folder / "node_modules" / "@ai-sdk" / "workflow" / "package.json").is_file():
            missing.append(
                f"{folder.relative_to(ROOT)}/node_modules is missing: run"
                f" npm ci --prefix {folder.relative_to(ROOT)} (make test-deps does this)"
            )
    return missing


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the rewind test needs:\n  " + "\n  ".join(missing), pytrace=False)
    tmp = tmp_path_factory.mktemp("rewind")
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / "tool-runs.jsonl"),
        "PYTHONPATH": str(ROOT),
        "WORKER_MERGE_MS": "0",  # each delta its own chunk: a window can land between them
    }
    with anthropic_stack(tmp, env) as s:
        yield s


def run_node(script: Path, stack: Stack, *args: str, request: dict[str, Any]) -> dict[str, Any]:
    code, out, err = node_host.run(script, list(args), 120, stdin=json.dumps(request))
    assert code == 0, f"{script.name}: {code}\n{err}\n{stack.logs()}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def resume(stack: Stack, which: Path, run: str, start: int) -> dict[str, Any]:
    request = {"api": stack.api, "chatId": run, "startIndex": start}
    if which == NEW:
        return run_node(NEW, stack, "reconnect", request=request)
    return run_node(OLD, stack, request=request)


@pytest.fixture(scope="module")
def answer(stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    """One finished chat answer, reasoning then text then a tool call the worker runs and
    the text after it: its run id and its chunks, read whole by the transport."""
    first = message(
        [thinking(THOUGHT), text(WORDS), tool_use("toolu_rw", "add", ['{"a": 2,', ' "b": 3}'])],
        stop_reason="tool_use",
    )
    stack.model.route("rewind-me", first)
    stack.model.enqueue(message([text(["Five ", "it ", "is."])]))
    sent = run_node(
        NEW, stack, "send", request={"api": stack.api, "text": "rewind-me", "body": {"id": "rw"}}
    )
    run = sent["requests"][0]["runId"]
    whole = resume(stack, NEW, run, 0)
    return run, whole["chunks"]


def index_of(chunks: list[dict[str, Any]], kind: str, nth: int = 0) -> int:
    return [i for i, c in enumerate(chunks) if c["type"] == kind][nth]


@pytest.mark.parametrize("which", [OLD, NEW], ids=["workflow-1.0.9", "workflow-2.0.43"])
def test_a_resume_landing_mid_text_gets_the_whole_part_once(
    stack: Stack, answer: tuple[str, list[dict[str, Any]]], which: Path
) -> None:
    run, chunks = answer
    total = len(chunks)
    start = index_of(chunks, "text-start")
    deltas = index_of(chunks, "text-delta", 3)  # inside the first text
    k = total - deltas
    got = resume(stack, which, run, -k)
    assert got["warnings"] == [], got["warnings"]
    # Served from the text's start: the transport (the old one too) passes every chunk on.
    assert got["chunks"] == chunks[start:]
    # The tail index makes the transport's own count start at the text-start, so that
    # it ends at the run's length, as a reconnect from there would ask.
    assert got["requests"][0]["tailIndex"] == str(start + k - 1)
    assert got["ends"] == [total]
    parts = got["message"]["parts"]
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts == ["".join(WORDS), "Five it is."]
    tools = [p for p in parts if p["type"] == "tool-add"]
    assert len(tools) == 1 and tools[0]["output"] == {"sum": 5}


@pytest.mark.parametrize("which", [OLD, NEW], ids=["workflow-1.0.9", "workflow-2.0.43"])
def test_a_resume_landing_between_a_tools_input_and_its_output_gets_the_tool_part(
    stack: Stack, answer: tuple[str, list[dict[str, Any]]], which: Path
) -> None:
    run, chunks = answer
    start = index_of(chunks, "tool-input-start")
    output = index_of(chunks, "tool-output-available")
    k = len(chunks) - output
    got = resume(stack, which, run, -k)
    assert got["warnings"] == [], got["warnings"]
    assert got["chunks"] == chunks[start:]
    assert got["requests"][0]["tailIndex"] == str(start + k - 1)
    assert got["ends"] == [len(chunks)]
    (tool,) = [p for p in got["message"]["parts"] if p["type"] == "tool-add"]
    assert tool["input"] == {"a": 2, "b": 3} and tool["output"] == {"sum": 5}


def test_a_resume_at_a_step_start_is_not_rewound(
    stack: Stack, answer: tuple[str, list[dict[str, Any]]]
) -> None:
    run, chunks = answer
    step = index_of(chunks, "start-step", 1)  # the step after the tool's
    k = len(chunks) - step
    got = resume(stack, NEW, run, -k)
    assert got["chunks"] == chunks[step:]
    assert got["requests"][0]["tailIndex"] == str(len(chunks) - 1)  # the true tail
    assert got["ends"] == [len(chunks)]
    assert got["warnings"] == []
