"""Runs of frames as the fan-out hands them to viewers: cut where a viewer already is."""

from __future__ import annotations

import pytest

from broadcaster.core import sse
from broadcaster.core.events import Event
from broadcaster.fanout.subscription import TAIL_BYTES, Topic
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


def topic_after(*runs: tuple[int, int, bytes, bool]) -> Topic:
    """A settled topic whose viewers were sent ``runs``."""
    topic = Topic("s", b"c", 0, "")
    for run in runs:
        topic.cursor, topic.tag = run[1], f"{run[1]:08x}"
        topic.remember(run)
    return topic


def test_a_topic_vouches_for_the_points_its_tail_holds_and_no_others() -> None:
    topic = topic_after(run_of(1, 3), run_of(4, 4), run_of(5, 8))
    assert topic.holds(8, "00000008") and not topic.holds(8, "00000007")
    assert topic.holds(2, "00000002") and topic.holds(4, "00000004")
    assert not topic.holds(2, "00000003"), "another history at 2"
    assert not topic.holds(9, "00000009"), "past the cursor"
    # The tag ``99.deadbeef`` inside the data is escaped JSON, not an id line.
    assert not topic.holds(99, "deadbeef")
    assert topic.since(8) == []
    assert topic.since(5) == [run_of(5, 8)]
    assert topic.since(3) == [run_of(4, 4), run_of(5, 8)]
    assert topic.since(1) == [run_of(1, 3), run_of(4, 4), run_of(5, 8)]
    assert topic.since(0) == [run_of(1, 3), run_of(4, 4), run_of(5, 8)]


def test_a_topic_tail_is_bounded_and_keeps_whole_runs() -> None:
    runs = [run_of(i, i) for i in range(1, 400)]
    topic = topic_after(*runs)
    kept = list(topic.tail)
    assert topic.tail_bytes == sum(len(r[2]) for r in kept) <= TAIL_BYTES
    assert kept == runs[-len(kept) :] and len(kept) < len(runs)
    first = kept[0][0]
    assert topic.since(first - 1) == kept and topic.since(first - 2) is None
    assert not topic.holds(first - 1, f"{first - 1:08x}"), "before the tail: the log's"
    huge = run_of(400, 400 + TAIL_BYTES // 50)
    topic.cursor = huge[1]
    topic.remember(huge)
    assert not topic.tail and topic.tail_bytes == 0 and topic.since(first) is None
