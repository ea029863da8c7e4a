"""Where a run's resume from its tail (``startIndex=-k``) starts: the nearest step or part
start at or before the asked chunk, so that no chunk served belongs to a part whose start
the client was not sent.

``WorkflowChatTransport`` asks for a run's last ``k`` chunks with ``startIndex=-k``; the
``k``-th chunk from the tail is often inside a text, reasoning or tool part. Transports
before ``@ai-sdk/workflow`` 1.0.17 crash on the part's deltas (their start is missing),
later ones drop them with a warning. Served from the start of every part still open at
the asked chunk, the resume holds each of its parts whole, once.

The transport reads ``x-workflow-stream-tail-index`` (``tail``) and sets its count of
chunks held to ``tail + 1 - k``: the index of the first chunk it is sent, from which it
counts every later chunk, and from which its later reconnects ask (``startIndex=n``). A
resume rewound to chunk ``r`` answers ``tail = r + k - 1``, so that this count is ``r``,
exact.

This module is the fold: pure, over the events of the asked chunk's step before it. The
route reads them backwards from the asked chunk, once per resume request, at most
``SCAN_LIMIT`` of them (``http/chat_answers.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from broadcaster.core.events import Event

SCAN_LIMIT = 2000
"""Events read back from the asked chunk looking for its step's start: a step longer than
this (the worker merges deltas, so it is long indeed) is rewound only to the parts that
opened within that many events."""

STEP_START = "start-step"
_BOUNDS: dict[str, tuple[str, bool]] = {
    **dict.fromkeys(("text-start", "reasoning-start"), ("id", True)),
    **dict.fromkeys(("text-end", "reasoning-end"), ("id", False)),
    **dict.fromkeys(
        ("tool-input-start", "tool-input-available", "tool-input-error"), ("toolCallId", True)
    ),
    **dict.fromkeys(
        ("tool-output-available", "tool-output-error", "tool-output-denied"), ("toolCallId", False)
    ),
}
"""What each chunk type that opens or closes a part names it by, and whether it opens."""


def _ref(event: Event, field: str) -> str | None:
    try:
        value = json.loads(event.data).get(field)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def rewind_to(before: Sequence[Event], asked: int) -> int:
    """The seq a resume asked to start at ``asked`` starts at instead: the earliest start
    of a part still open at ``asked``, or ``asked`` itself when none is. ``before``: the
    events before ``asked`` (oldest first) from its step's ``start-step``, or from as far
    back as was read. A tool part is open from its ``tool-input-start`` (or its
    self-contained ``tool-input-available``/``tool-input-error``) until its output."""
    open_at: dict[tuple[str, str], int] = {}  # (field, its value) -> the part's start
    for event in before:
        bound = _BOUNDS.get(event.type)
        ref = None if bound is None else _ref(event, bound[0])
        if bound is None or ref is None:
            continue
        if bound[1]:
            open_at.setdefault((bound[0], ref), event.seq)
        else:
            open_at.pop((bound[0], ref), None)
    return min([asked, *open_at.values()])


def step_window(newest_first: Sequence[Event]) -> list[Event]:
    """Of events read backwards from the asked chunk (newest first), those of its step:
    up to and including the nearest ``start-step``, oldest first."""
    window: list[Event] = []
    for event in newest_first:
        window.append(event)
        if event.type == STEP_START:
            break
    window.reverse()
    return window


def tail_header(start: int, k: int) -> int:
    """The ``x-workflow-stream-tail-index`` of a resume from the tail (``startIndex=-k``)
    whose first chunk is the run's chunk ``start``: the transport counts from
    ``tail + 1 - k``, which is then ``start``."""
    return start + k - 1
