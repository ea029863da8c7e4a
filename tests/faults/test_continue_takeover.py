"""A worker killed (``kill -9``) in the middle of a model call or a tool run: the worker
that takes the generation over after the lease goes on from what was shown, and the AI
SDK's stock readers end with the answer once and whole (docs/reliability.md, "A cut
answer is continued").

Real processes on 127.0.0.1 (``tests/support/faults.py``'s ``Cluster``): one Redis, two
front-ends, workers on the real ``anthropic`` SDK against the local fake Anthropic
server, which, asked to go on from a partial answer, goes on from where it stopped and
first repeats its last words (``tests/support/fake_continue.py``), as models do. Each
generation is read four ways by the SDKs' own client code: ai 6
(tests/clients/aisdk/read.mjs) and ai 7 (tests/clients/workflow/read.mjs), each live
through the cut and late (from the start, after it). Viewers that reconnect as
EventSource does check that every event arrived exactly once.

Cut mid-text, mid-thinking, mid-tool-input, and mid-tool-run (a tool that may run twice
and one that may not).
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support import node_host
from tests.support.aisdk import missing_prerequisites
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Script,
    message,
    stall,
    text,
    text_reply,
    thinking,
    tool_use,
)
from tests.support.faults import (
    Cluster,
    Viewer,
    create_generation,
    owned_by,
    poll,
    report,
    stored_events,
    stream_meta,
    verdict,
    wait_status,
)
from tests.support.polling import until
from tests.support.procs import ROOT, tool_worker_env
from tests.support.prompt_cache import without_breakpoints
from tests.support.worker_tools import runs
from worker.continuation import CONTINUE_PROMPT, LOST_RUN

pytestmark = pytest.mark.anyio

READERS = {
    "ai6": (ROOT / "tests" / "clients" / "aisdk" / "read.mjs", ""),
    "ai7": (ROOT / "tests" / "clients" / "workflow" / "read.mjs", ""),
    "ai7-reset": (ROOT / "tests" / "clients" / "workflow" / "read.mjs", "?reset_step=1"),
}
"""Each reader's script and its query: ``ai7-reset`` asks for ``reset-step``
(broadcaster/chat/reset_step.py), which only the AI SDK 7 knows."""
ANSWER = (
    "The bridge was finished in 1932 after six years of work, and it carried trams, "
    "trains and people across the harbour from the first day."
)
WORDS = [w + " " for w in ANSWER.split(" ")]
WORDS[-1] = WORDS[-1].rstrip()
SHOWN = 9
"""Words of the answer streamed before the model stalls and the worker is killed."""


@dataclass
class Scenario:
    name: str
    scripts: list[Script]
    cut_at: tuple[str, str]
    """The stored event (type, a string in it) after which the worker is killed."""
    answer: str | None = None
    """The whole answer the fake model goes on with, when asked to continue."""
    open_gate: bool = False
    """A tool runs at the cut (``cut_at`` names it): the kill waits for its run to start,
    then the gate opens."""
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_requests: list[Any] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    runs_file: Path | None = None
    readers: tuple[str, ...] = ("ai6", "ai7")
    takeover: str = "continue"
    """The workers' ``WORKER_TAKEOVER``."""


def _require_readers() -> None:
    missing = missing_prerequisites()
    if not (READERS["ai7"][0].parent / "node_modules" / "ai" / "package.json").is_file():
        missing.append("tests/clients/workflow/node_modules is missing: npm ci there")
    if missing:
        pytest.fail("these tests need:\n  " + "\n  ".join(missing), pytrace=False)


async def _seen(r: Any, gid: str, kind: str, value: str) -> bool:
    return any(e.type == kind and value in e.data for e in stored_events(r, gid))


async def _started(path: Path, tool: str) -> bool:
    return runs(path, tool, "start") >= 1


def _stop(procs: Any) -> None:
    """The live readers a failed scenario left running, stopped by pid."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _read(proc: node_host.Started, who: str) -> dict[str, Any]:
    code, out, err = node_host.finish(proc, 90)
    assert code == 0, f"{who}: exit {code}\nstderr:\n{err}\nstdout:\n{out}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


async def run_cut(tmp_path: Path, sc: Scenario) -> Scenario:
    """Run the scenario: the victim streams until ``cut_at``, is killed, another worker
    takes over; every reader reads."""
    _require_readers()
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = tool_worker_env(model.base_url, tmp_path)
        cluster.worker_env["WORKER_TAKEOVER"] = sc.takeover
        if sc.answer is not None:
            model.will_continue(sc.answer)
        for script in sc.scripts:
            model.enqueue(script)
        victim = cluster.add_worker()
        fe = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, fe, f"scenario {sc.name}", max_tokens=512)
            url = f"{fe}/v1/streams/{gid}/events"
            readers = {k: READERS[k] for k in sc.readers}
            live = {k: node_host.start(path, [url + q]) for k, (path, q) in readers.items()}
            try:
                viewers = [Viewer(cluster.urls, gid) for _ in range(3)]
                r = cluster.client()
                async with anyio.create_task_group() as tg:
                    for v in viewers:
                        tg.start_soon(v.run, client)
                    await poll(lambda: _seen(r, gid, *sc.cut_at), f"the cut point {sc.cut_at}")
                    if sc.open_gate:
                        tool = sc.cut_at[1]
                        await poll(
                            lambda: _started(tmp_path / "runs.jsonl", tool), f"{tool} to run"
                        )
                    victim.stop(signal.SIGKILL)
                    if sc.open_gate:
                        (tmp_path / "gate").touch()
                    rescuer = cluster.add_worker()
                    await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
                    await wait_status(client, fe, gid, {"completed", "failed"}, 60)
                stored = stored_events(r, gid)
                sc.meta = stream_meta(r, gid)
                r.close()
                for k, proc in live.items():
                    sc.messages[f"{k} live"] = _read(proc, f"{k} live")
                for k, (path, q) in readers.items():
                    late = node_host.start(path, [url + q])
                    sc.messages[f"{k} late"] = _read(late, f"{k} late")
            finally:
                _stop(live.values())
        # What the model was sent, the prompt cache's breakpoints aside.
        sc.model_requests = [without_breakpoints(q.body) for q in model.requests]
        billed = sum(x.deltas_sent for x in model.exchanges)
    verdicts = [verdict(v, stored) for v in viewers]
    report(f"continue after a cut ({sc.name})", verdicts, output_deltas_billed=billed)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    sc.events = [json.loads(e.data) for e in stored]
    sc.runs_file = tmp_path / "runs.jsonl"
    return sc


def assert_whole(sc: Scenario, expected_text: str) -> None:
    """Every reader's message: the text once and whole, nothing left streaming."""
    types = [e["type"] for e in sc.events]
    assert sc.meta["status"] == "completed" and sc.meta["attempt"] == "2", sc.meta
    assert types.count("start") == 1 and types.count("finish") == 1, types
    assert "data-retry" not in types and types.count("data-continued") == 1, types
    for who, msg in sc.messages.items():
        assert msg["text"] == expected_text, (who, msg["text"])
        for part in msg["text_parts"] + msg["reasoning_parts"]:
            assert part["state"] == "done", (who, part)
        for tool in msg["tools"]:
            assert tool["state"] not in ("input-streaming", "input-available"), (who, tool)
        assert (msg["metadata"] or {}).get("outputTokensByAttempt"), (who, msg["metadata"])


def _cut_text_script() -> Script:
    whole = message([thinking(["Let me ", "recall."], signature="sig-c1"), text(WORDS)])
    # message_start, thinking (start, 2 deltas, signature, stop), the text's start and
    # its first SHOWN words; then silence
    return [*whole[: 1 + 5 + 1 + SHOWN], stall()]


async def test_killed_mid_text_the_answer_is_continued_in_the_same_part(tmp_path: Path) -> None:
    sc = await run_cut(
        tmp_path,
        Scenario("mid-text", [_cut_text_script()], ("text-delta", WORDS[SHOWN - 1]), ANSWER),
    )
    assert_whole(sc, ANSWER)
    types = [e["type"] for e in sc.events]
    assert types.count("text-start") == 1 and types.count("start-step") == 1, types
    for who, msg in sc.messages.items():
        assert msg["part_types"] == ["step-start", "reasoning", "text"], (who, msg)
        assert msg["reasoning_parts"][0]["text"] == "Let me recall.", who
    # The model was sent the partial turn (the signed thinking kept) and asked to go on.
    going_on = sc.model_requests[1]["messages"]
    partial = "".join(WORDS[:SHOWN])
    assert going_on[-2] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Let me recall.", "signature": "sig-c1"},
            {"type": "text", "text": partial},
        ],
    }
    assert going_on[-1] == {"role": "user", "content": [{"type": "text", "text": CONTINUE_PROMPT}]}
    assert len(sc.model_requests) == 2


async def test_killed_mid_thinking_the_step_restarts_coherently(tmp_path: Path) -> None:
    cut = message([thinking(["Let me ", "think ", "hard."]), text(["x"])])[:4]  # 2 deltas
    again = message([thinking(["Thought ", "again."], signature="sig-c2"), text(WORDS)])
    scenario = Scenario("mid-thinking", [[*cut, stall()], again], ("reasoning-delta", "think"))
    scenario.readers = ("ai6", "ai7", "ai7-reset")
    sc = await run_cut(tmp_path, scenario)
    assert_whole(sc, ANSWER)
    types = [e["type"] for e in sc.events]
    k = types.index("data-continued")
    assert types[k + 1 : k + 4] == ["reasoning-end", "finish-step", "start-step"], types
    assert sc.events[k + 3] == {"type": "start-step", "reset": True}
    for who, msg in sc.messages.items():
        if who.startswith("ai7-reset"):
            continue
        # the cut thinking closed in its own step, then the new step; never shown again
        parts = ["step-start", "reasoning", "step-start", "reasoning", "text"]
        assert msg["part_types"] == parts, who
        thoughts = [p["text"] for p in msg["reasoning_parts"]]
        assert thoughts == ["Let me think ", "Thought again."], who
        assert "reset-step" not in msg["chunk_types"], who
    _assert_reset(sc, ["step-start", "reasoning", "text"], ["Thought again."])
    assert sc.model_requests[1]["messages"] == sc.model_requests[0]["messages"]


def _assert_reset(sc: Scenario, parts: list[str], thoughts: list[str]) -> None:
    """The AI SDK 7 readers that asked for ``reset-step``, live and late: the cut step's
    parts dropped, one step, the new attempt's parts only."""
    for who in ("ai7-reset live", "ai7-reset late"):
        msg = sc.messages[who]
        assert msg["chunk_types"].count("reset-step") == 1, (who, msg["chunk_types"])
        assert msg["part_types"] == parts, (who, msg["part_types"])
        assert [p["text"] for p in msg["reasoning_parts"]] == thoughts, who


async def test_with_takeover_restart_a_reader_asking_for_reset_step_shows_the_text_once(
    tmp_path: Path,
) -> None:
    """``WORKER_TAKEOVER=restart``: the cut step's text is shown again by the new call.
    The AI SDK 7 asking for ``reset-step`` drops the cut step: the text once. The others
    keep the restart as it always was: the cut parts closed in their step, then the new
    step (the cut words twice, never a part left streaming)."""
    again = message([thinking(["Let me ", "recall."], signature="sig-c2"), text(WORDS)])
    scenario = Scenario(
        "restart mid-text", [_cut_text_script(), again], ("text-delta", WORDS[SHOWN - 1])
    )
    scenario.readers, scenario.takeover = ("ai6", "ai7", "ai7-reset"), "restart"
    sc = await run_cut(tmp_path, scenario)
    types = [e["type"] for e in sc.events]
    assert sc.meta["status"] == "completed" and types.count("finish") == 1, sc.meta
    assert {"type": "start-step", "reset": True} in sc.events
    partial = "".join(WORDS[:SHOWN])
    for who, msg in sc.messages.items():
        texts = [p["text"] for p in msg["text_parts"]]
        assert all(p["state"] == "done" for p in msg["text_parts"] + msg["reasoning_parts"]), who
        if who.startswith("ai7-reset"):
            assert texts == [ANSWER], (who, texts)
        else:
            assert texts == [partial, ANSWER], (who, texts)
            assert msg["part_types"].count("step-start") == 2, who
    _assert_reset(sc, ["step-start", "reasoning", "text"], ["Let me recall."])


async def test_killed_mid_tool_input_the_call_is_closed_and_never_runs(tmp_path: Path) -> None:
    first = message(
        [text(["I will ", "add them. "]), tool_use("toolu_cut", "add", ['{"a": 2', ', "b": 3}'])],
        stop_reason="tool_use",
    )
    goes_on = message(
        [
            text(["add them. ", "Calling it now."]),
            tool_use("toolu_new", "add", ['{"a": 2, "b": 3}']),
        ],
        stop_reason="tool_use",
    )
    sc = await run_cut(
        tmp_path,
        Scenario(
            "mid-tool-input",
            [[*first[:7], stall()], goes_on, text_reply(["The sum ", "is 5."])],
            ("tool-input-delta", "toolu_cut"),
        ),
    )
    assert_whole(sc, "I will add them. Calling it now.The sum is 5.")
    assert sc.runs_file is not None and runs(sc.runs_file, "add", "start") == 1
    for who, msg in sc.messages.items():
        states = {t["toolCallId"]: t["state"] for t in msg["tools"]}
        assert states == {"toolu_cut": "output-error", "toolu_new": "output-available"}, who
    # The cut call was not sent back; the partial text was, with the ask to go on.
    going_on = sc.model_requests[1]["messages"]
    assert going_on[-2] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "I will add them. "}],
    }
    assert "toolu_cut" not in json.dumps(sc.model_requests[2])


def _tool_run(tool: str) -> list[Script]:
    call = message(
        [text(["Opening it."]), tool_use("toolu_run", tool, ["{}"])], stop_reason="tool_use"
    )
    return [call, text_reply(["Done."])]


async def test_killed_while_an_idempotent_tool_runs_it_runs_again(tmp_path: Path) -> None:
    sc = Scenario("mid-tool-run, idempotent", _tool_run("gate"), ("tool-input-available", "gate"))
    sc.open_gate = True
    await run_cut(tmp_path, sc)
    _mid_tool_checks(sc)
    assert sc.runs_file is not None
    assert runs(sc.runs_file, "gate", "start") == 2 and runs(sc.runs_file, "gate") == 1
    for who, msg in sc.messages.items():
        assert msg["tools"][0]["state"] == "output-available", who


async def test_killed_while_a_tool_that_may_not_run_twice_runs_it_is_interrupted(
    tmp_path: Path,
) -> None:
    sc = Scenario(
        "mid-tool-run, not idempotent",
        _tool_run("gate_once"),
        ("tool-input-available", "gate_once"),
    )
    sc.open_gate = True
    await run_cut(tmp_path, sc)
    _mid_tool_checks(sc)
    assert sc.runs_file is not None
    assert runs(sc.runs_file, "gate_once", "start") == 1
    errors = [e for e in sc.events if e["type"] == "tool-output-error"]
    assert errors == [
        {"type": "tool-output-error", "toolCallId": "toolu_run", "errorText": LOST_RUN}
    ]
    # the model is told, as an error result
    result = sc.model_requests[-1]["messages"][-1]["content"][0]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "toolu_run",
        "content": LOST_RUN,
        "is_error": True,
    }
    for who, msg in sc.messages.items():
        assert msg["tools"][0]["state"] == "output-error", who


def _mid_tool_checks(sc: Scenario) -> None:
    """Both tool-run scenarios: no cut model call, so no notice; the text once."""
    types = [e["type"] for e in sc.events]
    assert "data-continued" not in types and "data-retry" not in types
    assert sc.meta["status"] == "completed" and sc.meta["attempt"] == "2", sc.meta
    for who, msg in sc.messages.items():
        assert msg["text"] == "Opening it.Done.", (who, msg["text"])
        assert all(p["state"] == "done" for p in msg["text_parts"]), who
