"""A restarted step for the readers that can drop it: the worker marks the new step's
``start-step`` (``reset: true``), and the AI SDK 7's view of the stream serves it as
``reset-step`` to a reader that asked, once per run of frames for all of them; every
other reader is sent the stream as it is."""

from __future__ import annotations

from typing import Any

from broadcaster.chat.reset_step import MARKED, RESET, ResetView, wanted
from broadcaster.core import sse
from broadcaster.core.events import Event, dump_event
from worker.continuation import RESTARTED_STEP
from worker.model_call import _shown
from worker.transcript import ends_restarted, split_steps


def _frame(seq: int, obj: dict[str, Any], tag: str = "t1") -> bytes:
    kind, data = dump_event(obj)
    return sse.encode(Event(seq, kind, data, tag))


def test_the_view_finds_the_start_step_the_worker_writes() -> None:
    frame = _frame(12, RESTARTED_STEP)
    assert MARKED in frame
    assert ResetView().map(frame) == b"id: 12.t1\n" + RESET + b"\n"


def test_a_run_of_frames_keeps_its_ids_and_every_other_frame() -> None:
    run = b"".join(
        [
            _frame(7, {"type": "reasoning-end", "id": "r1"}),
            _frame(8, {"type": "finish-step"}),
            _frame(9, RESTARTED_STEP),
            _frame(10, {"type": "text-start", "id": "a2-t1"}),
        ]
    )
    out = ResetView().map(run)
    assert out == run.replace(
        b'event: start-step\ndata: {"type":"start-step","reset":true}',
        b'event: reset-step\ndata: {"type":"reset-step"}',
    )
    assert out.count(b"id: ") == 4 and b'"reset-step"' in out


def test_a_plain_start_step_and_everything_else_pass_as_the_same_object() -> None:
    run = _frame(3, {"type": "start-step"}) + _frame(
        4, {"type": "text-delta", "id": "t", "delta": "reset"}
    )
    assert ResetView().map(run) is run


def test_the_next_viewer_of_the_same_run_costs_an_identity_check() -> None:
    view = ResetView()
    run = _frame(9, RESTARTED_STEP)
    first = view.map(run)
    assert view.map(run) is first  # kept: not mapped again
    other = _frame(9, RESTARTED_STEP)  # equal, another object: mapped anew
    assert view.map(other) == first and view.last_in is other


def test_a_reader_asks_by_query_or_header_and_nothing_else_asks() -> None:
    assert wanted({}, {"reset_step": "1"}) and wanted({}, {"reset_step": "true"})
    assert wanted({"x-reset-step": "1"}, {})
    assert not wanted({}, {}) and not wanted({"x-reset-step": "0"}, {"reset_step": "no"})


def test_the_call_made_again_marks_its_start_step_and_only_it() -> None:
    events = [{"type": "start-step"}, {"type": "text-start", "id": "t"}, {"type": "finish-step"}]
    assert _shown(events, True, restarts=True) == [RESTARTED_STEP, events[1]]
    assert _shown(events, True) == events[:2]


def test_the_marked_step_is_a_step_of_the_answer() -> None:
    notice = {"type": "data-continued", "data": {"mode": "restart"}, "transient": True}
    attempt = [
        {"type": "start"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r"},
        notice,
        {"type": "reasoning-end", "id": "r"},
        {"type": "finish-step"},
        RESTARTED_STEP,
        {"type": "text-start", "id": "a2-t"},
    ]
    steps = split_steps(attempt)
    assert len(steps) == 1 and steps[0].events[0] == {"type": "text-start", "id": "a2-t"}


def test_a_stream_that_ends_in_a_restart_marks_the_next_call() -> None:
    notice = {"type": "data-continued", "data": {"mode": "restart"}, "transient": True}
    cut = [{"type": "start"}, {"type": "start-step"}, {"type": "reasoning-start", "id": "r"}]
    assert ends_restarted([*cut, notice, {"type": "reasoning-end", "id": "r"}])
    assert not ends_restarted([*cut, notice, RESTARTED_STEP])
    continued = {"type": "data-continued", "data": {"mode": "continue"}, "transient": True}
    assert not ends_restarted([*cut, continued]) and not ends_restarted(cut)
