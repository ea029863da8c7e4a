"""Runs of frames as the fan-out hands them to viewers: cut where a viewer already is."""

from __future__ import annotations

import pytest

from broadcaster.core import sse
from broadcaster.core.events import Event
from broadcaster.fanout.viewer import trim


def run_of(first: int, last: int, terminal: bool = False) -> tuple[int, int, bytes, bool]:
    events = [
        Event(
            seq,
            "finish" if terminal and seq == last else "text-delta",
            b'{"type":"x","delta":"a\\n\\nid: 99.deadbeef"}',
            f"{seq:08x}",
        )
        for seq in range(first, last + 1)
    ]
    return first, last, b"".join(sse.encode(e) for e in events), terminal


def test_a_run_is_cut_after_the_seq_a_viewer_has() -> None:
    whole = run_of(5, 9, terminal=True)
    assert trim(whole, 4) is whole
    cut = trim(whole, 7)
    assert cut == (8, 9, run_of(8, 9, terminal=True)[2], True)
    assert cut[2].startswith(b"id: 8.") and cut[2].endswith(b"data: [DONE]\n\n")


def test_json_that_looks_like_a_frame_boundary_is_not_one() -> None:
    """An escaped newline inside data is two characters, never a line break."""
    run = run_of(1, 3)
    assert trim(run, 1)[2] == run_of(2, 3)[2]


def test_a_seq_outside_the_run_is_refused() -> None:
    with pytest.raises(ValueError, match="no event"):
        trim(run_of(1, 3), 5)
