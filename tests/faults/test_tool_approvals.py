"""A worker killed (``kill -9``) at each moment around a tool call that waits for a
person: before the request is written, while the generation waits, right after the
decision, during the approved tool. In every case the tool runs exactly once (its runs are
recorded in a file by the worker that runs it, so the count survives the kill), the
decision is kept, and the generation ends with the model's next step.

Real processes on 127.0.0.1: a Redis of the test's own, a front-end, workers on the real
``anthropic`` SDK against the local fake Anthropic API (``WORKER_LEASE_SECONDS=1``, so a
killed worker's job is taken over within about a second).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_anthropic import (
    message,
    stall,
    text,
    text_reply,
    tool_use,
)
from tests.support.polling import wait_for
from tests.support.procs import parse_sse, tools_env
from tests.support.stacks import Stack, anthropic_stack
from tests.support.worker_tools import runs
from worker.continuation import LOST_RUN


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A front-end and no worker yet: each test starts its workers (``add_worker``), on
    the fake Anthropic API, with the test tools and a one-second lease."""
    env = {**tools_env(tmp_path), "WORKER_LEASE_SECONDS": "1"}
    with anthropic_stack(tmp_path, env, worker=False) as built:
        yield built


def ran(stack: Stack, tool: str, what: str = "end") -> int:
    """How often ``tool`` reached ``what`` in any of the stack's workers."""
    assert stack.root is not None
    return runs(stack.root / "runs.jsonl", tool, what)


def events(raw: bytes) -> list[dict[str, Any]]:
    found, _, _ = parse_sse(raw)
    return [json.loads(e.data) for e in found if e.data and e.data != "[DONE]"]


def generation_of(stack: Stack, body: dict[str, Any]) -> str:
    """A generation started as POST /v1/generations starts one (no chat: nothing here
    depends on a chat's answer)."""
    resp = httpx.post(f"{stack.frontend.url}/v1/generations", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    gid: str = resp.json()["id"]
    return gid


def meta(stack: Stack, gid: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.frontend.url}/v1/generations/{gid}").json()
    return found


def stored(stack: Stack, gid: str) -> list[dict[str, Any]]:
    return events(httpx.get(f"{stack.frontend.url}/v1/streams/{gid}/events", timeout=30).content)


def pending_approval(stack: Stack, gid: str) -> str | None:
    if meta(stack, gid)["status"] != "waiting":
        return None
    asked = [e for e in stored_now(stack, gid) if e["type"] == "tool-approval-request"]
    return str(asked[-1]["approvalId"]) if asked else None


def stored_now(stack: Stack, gid: str) -> list[dict[str, Any]]:
    """The events so far, without waiting for the end: a catch-up read of the generation
    as a (read-only, JSON) Durable Stream."""
    resp = httpx.get(f"{stack.frontend.url}/v1/stream/{gid}", params={"offset": "-1"})
    if resp.status_code != 200:
        return []
    found: list[dict[str, Any]] = resp.json()
    return found


def approve(stack: Stack, gid: str, approval: str) -> None:
    resp = httpx.post(
        f"{stack.frontend.url}/v1/generations/{gid}/approvals",
        json={"approvalId": approval, "approved": True},
    )
    assert resp.status_code == 200 and resp.json()["decided"], resp.text


def request(words: str) -> dict[str, Any]:
    return {"prompt": words, "max_tokens": 256}


CALL = [text(["On it."]), tool_use("toolu_k", "approved_add", ['{"a": 20, "b": 22}'])]


def ended_well(stack: Stack, gid: str) -> list[dict[str, Any]]:
    wait_for(
        "the end", lambda: meta(stack, gid)["status"] in ("completed", "failed"), context=stack.logs
    )
    assert meta(stack, gid)["status"] == "completed", stack.logs()
    found = stored(stack, gid)
    kinds = [e["type"] for e in found]
    assert kinds.count("finish") == 1 and kinds.count("data-approval") == 1, kinds
    outputs = [e for e in found if e["type"] == "tool-output-available"]
    assert [o["output"] for o in outputs] == [{"sum": 42}], outputs
    return found


def test_killed_before_the_request_is_written(stack: Stack) -> None:
    """Killed while the model's call (the tool_use) streams: the next worker asks the
    model to go on from the text it showed (the repeat at the seam trimmed), then asks the
    person; nothing ran before the decision, the tool once after."""
    victim = stack.add_worker()
    stack.anthropic.enqueue([*message(CALL, stop_reason="tool_use")[:4], stall()])
    stack.anthropic.enqueue(message(CALL, stop_reason="tool_use"))
    stack.anthropic.enqueue(text_reply(["Forty-", "two."]))
    gid = generation_of(stack, request("add 20 and 22"))
    wait_for(
        "the call streaming",
        # The text shown (what the next worker goes on from), not merely the start: a
        # kill between the two, on a busy machine, left nothing shown to go on from.
        lambda: (
            stack.anthropic.request_count == 1
            and any(e["type"] == "text-delta" for e in stored_now(stack, gid))
        ),
        context=stack.logs,
    )
    victim.stop(signal.SIGKILL)
    stack.add_worker()
    wait_for("the request", lambda: pending_approval(stack, gid) is not None, context=stack.logs)
    assert ran(stack, "approved_add", "start") == 0
    approve(stack, gid, str(pending_approval(stack, gid)))
    found = ended_well(stack, gid)
    kinds = [e["type"] for e in found]
    assert kinds.count("data-continued") == 1 and kinds.count("tool-approval-request") == 1
    assert kinds.count("start") == 1 and kinds.count("text-start") == 2, kinds  # a step each
    said = "".join(e["delta"] for e in found if e["type"] == "text-delta")
    assert said == "On it.Forty-two.", said  # "On it." once: the model's repeat was trimmed
    assert ran(stack, "approved_add", "start") == ran(stack, "approved_add") == 1


def test_killed_while_it_waits(stack: Stack) -> None:
    """The generation waits holding nothing: killing its worker changes nothing; the
    decision queues it for whichever worker is alive, which counts no new attempt."""
    victim = stack.add_worker()
    stack.anthropic.enqueue(message(CALL, stop_reason="tool_use"))
    stack.anthropic.enqueue(text_reply(["Forty-", "two."]))
    gid = generation_of(stack, request("add 20 and 22"))
    wait_for("the request", lambda: pending_approval(stack, gid) is not None, context=stack.logs)
    victim.stop(signal.SIGKILL)
    stack.add_worker()
    approve(stack, gid, str(pending_approval(stack, gid)))
    kinds = [e["type"] for e in ended_well(stack, gid)]
    assert "data-retry" not in kinds
    assert ran(stack, "approved_add", "start") == ran(stack, "approved_add") == 1


def test_killed_right_after_the_decision(stack: Stack) -> None:
    """Decided while no worker is alive (the last one was killed): the job waits in the
    queue, the next worker to start resumes it and runs the tool once."""
    victim = stack.add_worker()
    stack.anthropic.enqueue(message(CALL, stop_reason="tool_use"))
    stack.anthropic.enqueue(text_reply(["Forty-", "two."]))
    gid = generation_of(stack, request("add 20 and 22"))
    wait_for("the request", lambda: pending_approval(stack, gid) is not None, context=stack.logs)
    approval = str(pending_approval(stack, gid))
    victim.stop(signal.SIGKILL)
    approve(stack, gid, approval)
    assert meta(stack, gid)["status"] == "queued"
    stack.add_worker()
    ended_well(stack, gid)
    assert ran(stack, "approved_add", "start") == ran(stack, "approved_add") == 1


def test_killed_during_the_approved_tool(stack: Stack) -> None:
    """Killed while the approved tool runs: as for any tool that does not say it is
    idempotent, the next worker does not run it again (it may have acted): the call ends
    as interrupted, which the model is told, and nobody is asked about it again."""
    victim = stack.add_worker()
    call = [text(["Waiting."]), tool_use("toolu_g", "gated_approval", ["{}"])]
    stack.anthropic.enqueue(message(call, stop_reason="tool_use"))
    stack.anthropic.enqueue(text_reply(["Opened."]))
    gid = generation_of(stack, request("open the gate"))
    wait_for("the request", lambda: pending_approval(stack, gid) is not None, context=stack.logs)
    approve(stack, gid, str(pending_approval(stack, gid)))
    wait_for(
        "the tool",
        lambda: ran(stack, "gated_approval", "start") == 1,
        context=stack.logs,
    )
    victim.stop(signal.SIGKILL)
    (stack.root / "gate").touch()
    stack.add_worker()
    wait_for("the end", lambda: meta(stack, gid)["status"] == "completed", context=stack.logs)
    found = stored(stack, gid)
    kinds = [e["type"] for e in found]
    assert kinds.count("tool-approval-request") == 1 and kinds.count("data-approval") == 1
    assert kinds.count("tool-output-error") == 1 and kinds.count("finish") == 1
    error = next(e for e in found if e["type"] == "tool-output-error")
    assert error["errorText"] == LOST_RUN
    assert ran(stack, "gated_approval", "start") == 1  # the killed run only
    result = stack.anthropic.requests[-1].body["messages"][-1]["content"][0]
    assert result["is_error"] and result["content"] == LOST_RUN
    assert "Traceback" not in stack.frontend.log()
