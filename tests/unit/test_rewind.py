"""Where a resume from a run's tail starts (``chat/rewind.py``): the start of every part
still open at the asked chunk, and the tail index that keeps the transport's count."""

from __future__ import annotations

import json
from typing import Any

from broadcaster.chat.rewind import rewind_to, step_window, tail_header
from broadcaster.core.events import Event


def events(*chunks: dict[str, Any], first: int = 1) -> list[Event]:
    return [
        Event(first + i, c["type"], json.dumps(c, separators=(",", ":")).encode())
        for i, c in enumerate(chunks)
    ]


STEP = events(
    {"type": "start-step"},  # 1
    {"type": "reasoning-start", "id": "r"},  # 2
    {"type": "reasoning-delta", "id": "r", "delta": "hm"},  # 3
    {"type": "reasoning-end", "id": "r"},  # 4
    {"type": "text-start", "id": "t"},  # 5
    {"type": "text-delta", "id": "t", "delta": "a"},  # 6
    {"type": "text-end", "id": "t"},  # 7
    {"type": "tool-input-start", "toolCallId": "c", "toolName": "add"},  # 8
    {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": "{}"},  # 9
    {"type": "tool-input-available", "toolCallId": "c", "toolName": "add", "input": {}},  # 10
    {"type": "tool-output-available", "toolCallId": "c", "output": 1},  # 11
    {"type": "finish-step"},  # 12
)


def before(asked: int) -> list[Event]:
    return [e for e in STEP if e.seq < asked]


def test_inside_a_part_rewinds_to_its_start() -> None:
    assert rewind_to(before(3), 3) == 2  # a reasoning delta
    assert rewind_to(before(7), 7) == 5  # the text's end
    assert rewind_to(before(9), 9) == 8  # the tool's input
    assert rewind_to(before(11), 11) == 8  # its output: the part opened at its input


def test_between_parts_is_not_rewound() -> None:
    for asked in (1, 2, 5, 8, 12):
        assert rewind_to(before(asked), asked) == asked


def test_a_tool_without_a_streamed_input_opens_at_its_input() -> None:
    got = events(
        {"type": "start-step"},
        {"type": "tool-input-available", "toolCallId": "d", "toolName": "x", "input": {}},
        {"type": "tool-approval-request", "approvalId": "a", "toolCallId": "d"},
    )
    assert rewind_to(got, 4) == 2


def test_the_window_is_the_asked_chunks_step() -> None:
    newest_first = list(reversed(STEP)) + list(
        reversed(events({"type": "text-start", "id": "z"}, first=0))
    )
    window = step_window(newest_first)
    assert window == STEP and window[0].type == "start-step"


def test_the_tail_index_makes_the_transports_count_start_at_the_rewound_chunk() -> None:
    for start, k in ((0, 1), (2, 4), (10, 3)):
        tail = tail_header(start, k)
        assert max(0, tail + 1 - k) == start  # WorkflowChatTransport's own arithmetic
