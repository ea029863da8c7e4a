"""AG-UI in: an agent that speaks AG-UI (pydantic-ai's AG-UI adapter over a
``FunctionModel``, offline: tests/support/agui_agent.py) publishes its events to a stream
through ``POST /v1/agui/streams/{id}/events``, and every reader gets them: the AI SDK's
own reader (tests/clients/aisdk/read.mjs, ``readUIMessageStream``), the plain SSE route,
and ``@ag-ui/client`` (tests/clients/agui/agui.mjs, its ``verifyEvents``) reading the
stream's AG-UI view. The events go in as the adapter's SSE text, cut across requests
mid-message and mid-call (the front-end keeps the mapping's state between them), and as
JSON; bad input is a 4xx and leaves the stream as it was.

Needs node >= 20 and the npm packages of tests/clients/agui and tests/clients/aisdk
(``make test-deps``); without them the test fails and says so. It never skips.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import agui_agent, node_host
from tests.support.procs import ROOT
from tests.support.stacks import Stack, start_stack

AGUI = ROOT / "tests" / "clients" / "agui" / "agui.mjs"
AISDK = ROOT / "tests" / "clients" / "aisdk" / "read.mjs"
SSE = {"content-type": "text/event-stream"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    needed = [
        ROOT / "tests/clients/agui/node_modules/@ag-ui/client/package.json",
        ROOT / "tests/clients/aisdk/node_modules/ai/package.json",
    ]
    missing = [str(p.parent.parent.parent) for p in needed if not p.is_file()]
    if missing:
        pytest.fail(f"npm ci in {missing} (make test-deps) first", pytrace=False)
    s = start_stack(tmp_path_factory.mktemp("agui-in"), "aguiin", None)
    try:
        yield s
    finally:
        s.stop()


def node(stack: Stack, *args: str) -> dict[str, Any]:
    code, out, err = node_host.run(args[0], list(args[1:]), timeout=90)
    assert code == 0, f"{args[:2]} exited {code}\n{err}\n{out}\n{stack.logs()}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def publish(stack: Stack, stream: str, body: str | bytes, **headers: str) -> httpx.Response:
    url = f"{stack.url}/v1/agui/streams/{stream}/events"
    return httpx.post(url, content=body, headers=headers or SSE)


def test_an_agui_agent_publishes_and_every_reader_gets_it(stack: Stack) -> None:
    frames = asyncio.run(agui_agent.sse())
    assert frames[0].startswith("data: ") and '"RUN_STARTED"' in frames[0]
    stream = "agui-in-1"
    # Cut into requests of 3 frames: across a text message and across a tool call.
    for at in range(0, len(frames), 3):
        answer = publish(stack, stream, "".join(frames[at : at + 3]))
        assert answer.status_code == 201, answer.text
    sdk = node(stack, str(AISDK), f"{stack.url}/v1/streams/{stream}/events")
    assert sdk["text"] == agui_agent.ANSWER
    (tool,) = sdk["tools"]
    assert tool["toolName"] == "weather" and tool["input"] == {"city": "Paris"}
    assert tool["state"] == "output-available"
    assert sdk["chunk_types"][0] == "start" and sdk["chunk_types"][-1] == "finish"
    # AG-UI again, through the stream's AG-UI view, verified by AG-UI's own client.
    view = node(stack, str(AGUI), "read", f"{stack.url}/v1/agui/generations/{stream}/events")
    events = view["events"]
    said = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert said == agui_agent.ANSWER
    (result,) = [e for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert json.loads(result["content"]) == {"city": "Paris", "temp": 21}
    assert events[-1]["type"] == "RUN_FINISHED"
    # Plain SSE: the stored chunks, one per event.
    plain = httpx.get(f"{stack.url}/v1/streams/{stream}/events").text
    assert '"type":"tool-output-available"' in plain and '"type":"finish"' in plain
    # The run has ended: more is refused, nothing is added.
    late = publish(stack, stream, frames[-1])
    assert late.status_code == 409 and late.json()["error"] == "ended"


def test_json_events_and_bad_input(stack: Stack) -> None:
    stream = "agui-in-2"
    start = [
        {"type": "RUN_STARTED", "threadId": "t", "runId": "r"},
        {"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"},
    ]
    ok = publish(stack, stream, json.dumps(start), **{"content-type": "application/json"})
    assert ok.status_code == 201 and ok.json()["last_event_id"] == ok.json()["appended"] == 2
    bad = [
        ({"type": "TEXT_MESSAGE_CONTENT", "delta": "x"}, "messageId"),  # no message id
        ({"delta": "x"}, "type"),
        ({"type": "text-delta", "id": "m1", "delta": "x"}, "type"),  # not AG-UI
        ([], "no AG-UI event"),
        ("[1]", "JSON object"),
    ]
    for body, named in bad:
        text = body if isinstance(body, str) else json.dumps(body)
        refused = publish(stack, stream, text, **{"content-type": "application/json"})
        assert refused.status_code == 422 and named in refused.text, refused.text
    assert publish(stack, stream, "data: {not json\n\n").status_code == 422
    rest = [
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Hé 🙂"},
        {"type": "CUSTOM", "name": "progress", "value": {"done": 1}},
        {"type": "STATE_SNAPSHOT", "snapshot": {"n": 1}},
        {"type": "RUN_FINISHED", "threadId": "t", "runId": "r"},
    ]
    done = publish(stack, stream, json.dumps(rest), **{"content-type": "application/json"})
    assert done.status_code == 201, done.text
    sdk = node(stack, str(AISDK), f"{stack.url}/v1/streams/{stream}/events")
    assert sdk["text"] == "Hé 🙂"  # nothing of the refused bodies
    assert "data-progress" in sdk["chunk_types"] and "data-agui-state" in sdk["chunk_types"]
    assert sdk["chunk_types"][-2:] == ["text-end", "finish"]  # the open text closed
