"""Property tests (hypothesis) of the pure parsers and validators that bad input meets
first: resume points (``sse.parse_resume_point``), stream ids (``keys.STREAM_ID_RE``) and
event bodies (``events.dump_event`` / ``dump_batch``). Each either accepts its input and
returns something well-formed, or refuses it with its own error: never anything else.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from broadcaster.core import keys, sse
from broadcaster.core.events import TERMINAL_TYPES, TYPE_RE, InvalidEvent, dump_batch, dump_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@given(st.text())
@example("-1")
@example("1" * 10_000)
@example("99999999999999999999")
@example("3.")
@example("3.\n")
@example("٣")  # a non-ASCII decimal digit
def test_a_resume_point_is_a_seq_or_refused(value: str) -> None:
    parsed = sse.parse_resume_point(value)
    if parsed is None:
        return
    seq, tag = parsed
    assert 0 <= seq < 10**18
    if value.strip():
        assert value.strip().split(".")[0] == str(seq)
    assert tag is None or (len(tag) == 8 and value.strip().endswith("." + tag))


@given(
    st.integers(min_value=0, max_value=10**18 - 1),
    st.from_regex(r"[A-Za-z0-9_-]{0,64}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
)
def test_every_id_the_server_could_issue_is_accepted(seq: int, suffix: str, tag: str) -> None:
    assert sse.parse_resume_point(str(seq)) == (seq, None)
    assert sse.parse_resume_point(f"{seq}.{tag}") == (seq, tag)
    assert sse.parse_resume_point(f"{seq}.{suffix}") in ((seq, None), (seq, suffix))


@given(st.integers(max_value=-1) | st.integers(min_value=10**18))
def test_negative_and_enormous_seqs_are_refused(seq: int) -> None:
    assert sse.parse_resume_point(str(seq)) is None


@given(st.text(max_size=200))
@example("a*")
@example("{x}")
@example("a:b")
@example("../x")
@example("x" * 10_000)
@example("abc\n")
def test_a_stream_id_cannot_escape_its_key(stream_id: str) -> None:
    if keys.STREAM_ID_RE.match(stream_id):
        assert len(stream_id) <= 64
        key = keys.log_key(stream_id)
        # One hash tag, the project's own (a slot group): the id can neither add one nor
        # be mistaken for another part of the key.
        assert key.count("{") == 1 and key.count("}") == 1
        assert key.endswith(f"}}:{stream_id}:log") and ":" not in stream_id


event_like = st.builds(
    lambda etype, rest: {**rest, "type": etype},
    st.from_regex(TYPE_RE, fullmatch=True) | st.text(max_size=5) | json_values,
    st.dictionaries(st.text(), json_values, max_size=4),
)
"""Objects with a ``type``, valid or not, and any other fields."""


@given(event_like | json_values)
@example({"type": "x", "a": "\ud800"})
@example({"type": "x", "a": float("nan")})
@example({"type": "Upper"})
@example({"type": "x\ny"})
def test_an_event_body_is_stored_as_one_line_or_refused(obj: Any) -> None:
    try:
        etype, data = dump_event(obj)
    except InvalidEvent:
        return
    assert b"\n" not in data and b"\r" not in data  # one SSE data line
    decoded = json.loads(data.decode("utf-8"))
    assert decoded == obj and decoded["type"] == etype
    assert TYPE_RE.match(etype)


@given(st.lists(event_like, max_size=5))
def test_a_batch_ends_only_at_its_last_event(objs: list[Any]) -> None:
    try:
        dumped = dump_batch(objs)
    except InvalidEvent:
        return
    assert len(dumped) == len(objs) >= 1
    assert all(etype not in TERMINAL_TYPES for etype, _ in dumped[:-1])
