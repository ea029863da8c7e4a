"""worker.takeover: what an attempt that takes a generation over does first, decided once
from the stream, one row per way the stream can stand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.continuation import RESTARTED_STEP
from worker.takeover import Call, Continue, Move, Plan, Reattach, RunTools, decide
from worker.transcript import plan_resume
from worker.usage import Usage

Event = dict[str, Any]

START: list[Event] = [{"type": "start", "messageId": "m"}, {"type": "start-step"}]
TEXT: list[Event] = [
    {"type": "text-start", "id": "t0"},
    {"type": "text-delta", "id": "t0", "delta": "Hello wor"},
]
CALL: list[Event] = [
    {"type": "tool-input-start", "toolCallId": "c1", "toolName": "add"},
    {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"a": 1}'},
    {"type": "tool-input-available", "toolCallId": "c1", "toolName": "add", "input": {"a": 1}},
]
UNSIGNED: list[Event] = [
    {"type": "reasoning-start", "id": "r0"},
    {"type": "reasoning-delta", "id": "r0", "delta": "hm"},
]
FINISHED: list[Event] = [
    *START,
    *TEXT,
    {"type": "text-end", "id": "t0"},
    {"type": "finish-step"},
]
NOTICE_RESTART: Event = {
    "type": "data-continued",
    "data": {"attempt": 2, "reason": "lost", "mode": "restart"},
    "transient": True,
}

GO_ON, RESTART = "continue", "restart"

# events, steps_done, WORKER_TAKEOVER, the move, the notice's mode (None: no notice)
ROWS: list[tuple[str, list[Event], int, str, Move | type, str | None]] = [
    ("a step finished: the next call", FINISHED, 1, GO_ON, Call(), None),
    ("nothing of a step shown yet", START[:1], 0, GO_ON, Call(), None),
    ("output whole, tools missing", [*START, *CALL], 1, GO_ON, RunTools(True), None),
    ("cut in its text: go on", [*START, *TEXT], 0, GO_ON, Continue, GO_ON),
    ("cut in its text, restart asked", [*START, *TEXT], 0, RESTART, Call(True), RESTART),
    ("cut after a whole call", [*START, *CALL, *TEXT], 0, GO_ON, RunTools(False), "tools"),
    ("cut, nothing to send back", [*START, *UNSIGNED], 0, GO_ON, Call(True), RESTART),
    ("restarted, call not begun", [*START, *UNSIGNED, NOTICE_RESTART], 0, GO_ON, Call(True), None),
]


def planned(
    events: list[Event],
    steps_done: int = 0,
    meta: dict[str, str] | None = None,
    *,
    attempt: int = 2,
    lost_worker: bool = True,
    mode: str = GO_ON,
    point: dict[str, Any] | None = None,
) -> Plan:
    resume = plan_resume(events, steps_done)
    return decide(
        resume, events, meta or {}, attempt=attempt, lost_worker=lost_worker, mode=mode, point=point
    )


@pytest.mark.parametrize(
    ("events", "steps_done", "mode", "move", "notice"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_the_plan_for_each_way_the_stream_stands(
    events: list[Event], steps_done: int, mode: str, move: Move | type, notice: str | None
) -> None:
    plan = planned(events, steps_done, mode=mode)
    if isinstance(move, type):
        assert isinstance(plan.first, move)
    else:
        assert plan.first == move
    assert (plan.notice.mode if plan.notice else None) == notice
    if notice is not None:
        assert plan.progress.id_prefix == "a2-"
        assert plan.notice is not None and plan.notice.events[0]["type"] == "data-continued"


def test_a_decision_is_no_lost_worker() -> None:
    """A person decided: the tool the call waited on ran nowhere before."""
    events = [*START, *CALL]
    assert planned(events, 1, lost_worker=False).first == RunTools(lost_run=False)


def test_a_continuation_is_sent_the_partial_turn_and_streams_into_the_open_part() -> None:
    plan = planned([*START, *TEXT])
    assert isinstance(plan.first, Continue)
    assert plan.first.open_text == "t0" and plan.first.partial_text == "Hello wor"
    assert plan.first.turn == [{"type": "text", "text": "Hello wor"}]
    assert plan.first.events[: len(TEXT)] == TEXT


def test_a_cut_step_with_a_whole_call_becomes_the_open_step() -> None:
    plan = planned([*START, *CALL, *TEXT])
    assert plan.notice is not None and plan.notice.meta == {"steps_done": "1"}
    (step,) = plan.progress.steps
    assert step.events[-1] == {"type": "text-end", "id": "t0"}  # closed by the notice


def test_a_restart_resets_the_stored_text_to_the_kept_steps() -> None:
    plan = planned([*FINISHED, {"type": "start-step"}, *UNSIGNED], 1)
    assert plan.notice is not None and plan.notice.text_reset == "Hello wor"
    assert plan.notice.events[-1] == {"type": "finish-step"}
    assert plan.first == Call(restarts=True) and RESTARTED_STEP["reset"] is True


def test_a_cut_call_still_running_is_reattached_to_with_its_ids() -> None:
    events = [
        {"type": "data-continued", "data": {"attempt": 3, "mode": "continue"}},
        *START,
        {"type": "text-start", "id": "a3-t0"},
    ]
    point = {"id": "resp_1", "after": 4}
    plan = planned(events, attempt=4, point=point)
    assert plan.first == Reattach(point, [{"type": "text-start", "id": "a3-t0"}])
    assert plan.notice is None
    progress = plan.progress
    assert (progress.id_prefix, progress.started, progress.stream_steps) == ("a3-", True, 1)


def test_the_usage_of_the_kept_steps_goes_on_counting() -> None:
    meta = {
        "usage": json.dumps({"input_tokens": 5, "output_tokens": 7}),
        "usage_attempts": json.dumps({"1": 7}),
        "steps_model": "m-1",
    }
    tally = planned(FINISHED, 1, meta).progress.tally
    kept = {"1": Usage(output=7)}  # kept before the usage had its kinds: the output alone
    assert (tally.usage, tally.model, tally.by_attempt) == (Usage(5, 7), "m-1", kept)
    tally.add(Usage(1, 2, cache_read=1), None)
    assert tally.finish_metadata() == {
        "model": "m-1",
        "usage": Usage(6, 9, cache_read=1).ai_sdk(),
        "outputTokensByAttempt": {"1": 7, "2": 2},
        "usageByAttempt": {"1": Usage(output=7).ai_sdk(), "2": Usage(1, 2, 1).ai_sdk()},
    }
    assert json.loads(tally.meta()["usage_attempts"]) == {
        "1": Usage(output=7).snake(),
        "2": Usage(1, 2, 1).snake(),
    }
    none_kept = planned([*START, *TEXT], 0, meta).progress.tally
    assert (none_kept.usage, none_kept.by_attempt) == (None, kept)
