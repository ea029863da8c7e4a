"""Request bodies are JSON in UTF-8 only: Python's parser alone also takes UTF-16 and
UTF-32 (it detects them), which RFC 8259 does not allow between systems."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.core import events
from broadcaster.durable import protocol
from broadcaster.http.bodies import parse_json, separators
from broadcaster.http.errors import ApiError

EVENT = {"type": "data-odd", "text": "é"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"])
def test_a_body_not_in_utf8_is_422_invalid_json(encoding: str) -> None:
    body = json.dumps(EVENT, ensure_ascii=False).encode(encoding)
    if encoding.startswith("utf"):
        assert json.loads(body) == EVENT  # what Python's parser alone does
    with pytest.raises(ApiError) as refused:
        parse_json(body)
    assert (refused.value.status, refused.value.code) == (422, "invalid_json")
    with pytest.raises(protocol.BadRequest):
        protocol.json_messages(body, allow_empty=False)


def test_a_utf8_body_is_parsed() -> None:
    body = json.dumps(EVENT, ensure_ascii=False).encode()
    assert parse_json(body) == EVENT
    assert protocol.json_messages(body, allow_empty=False) == [
        json.dumps(EVENT, ensure_ascii=False, separators=(",", ":")).encode()
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"a": NaN}', "invalid_request"),
        (b'{"a": -Infinity}', "invalid_request"),
        (b'{"a": 1e999}', "invalid_request"),
        (b'{"a": "\\ud800"}', "invalid_request"),
        (b'{"\\udfff": 1}', "invalid_request"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        (b"[" * 129 + b"]" * 129, "too_deep"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "invalid_json"),
    ],
)
def test_what_json_cannot_carry_is_422_never_another_error(body: bytes, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_json(body)
    assert (refused.value.status, refused.value.code) == (422, code)


def test_surrogate_pairs_and_deep_enough_json_are_taken() -> None:
    assert parse_json(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert parse_json(b"[" * 128 + b"]" * 128) is not None


@pytest.mark.parametrize("shift", [-3, -2, -1, 0, 1])
@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF"])
def test_a_lone_surrogate_is_found_across_the_pieces_of_a_long_body(
    shift: int, escape: str
) -> None:
    """A long body is searched for surrogate escapes a piece at a time: one that straddles
    two pieces, anywhere, is found all the same."""
    prefix = '{"pad": "' + "x" * (events.PIECE_CHARS - 20 + shift) + '", "a": "'
    assert len(prefix) == events.PIECE_CHARS - 2 + shift  # where the escape begins
    body = (prefix + escape + '", "tail": "' + "y" * events.PIECE_CHARS + '"}').encode()
    with pytest.raises(ApiError) as refused:
        parse_json(body)
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")
    paired = body.replace(escape.encode(), b"\\ud83d\\ude00")
    assert parse_json(paired)["a"] == "\U0001f600"


@pytest.mark.parametrize(
    "chunk", [b"", b"x", b'{"a": [1, 2, {"b": ":,[{"}]}', bytes(range(256)) * 3]
)
def test_separators_counts_each_opening_comma_and_colon(chunk: bytes) -> None:
    expected = sum(chunk.count(c) for c in (b",", b":", b"[", b"{"))
    assert separators(chunk) == expected


SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(alphabet='ab,[]{}":\\ é', max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text("ab,]"), inner, max_size=5),
    max_leaves=60,
)


@settings(max_examples=200, deadline=None)
@given(value=VALUES, nesting=st.integers(0, 12), piece=st.integers(3, 40), spaced=st.booleans())
def test_a_long_body_parsed_in_pieces_and_runs_is_what_one_parse_makes(
    value: Any, nesting: int, piece: int, spaced: bool
) -> None:
    """Text longer than a piece is parsed a piece at a time, an array's scalars many to a
    call, and checked for depth piece by piece: the same value as one parse, and the same
    refusal when it nests too deep."""
    for _ in range(nesting):
        value = [value, list(range(piece))] if nesting % 2 else {"w": value, "z": [0, "a,]"]}
    text = json.dumps(value, ensure_ascii=False, indent=1 if spaced else None)
    try:
        with patch.object(events, "PIECE_CHARS", piece):
            parsed = events.loads_strict(text, depth=8)
    except events.InvalidJson as refused:
        assert refused.code == "too_deep"
        assert events.too_deep(json.loads(text), 8)
    else:
        assert parsed == json.loads(text)
        assert not events.too_deep(parsed, 8)


ENCODERS = [
    json.JSONEncoder(separators=(",", ":")).encode,
    json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode,
]
ODD_SCALARS = st.one_of(
    SCALARS,
    st.floats(),  # NaN and the infinities: refused by one encoder, written by the other
    st.text(max_size=12),  # any code point: astral, lone surrogates, controls
)
ODD_VALUES = st.recursive(
    ODD_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=8)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text("ab\u00e9", max_size=3), inner, max_size=5)
        | st.dictionaries(st.integers(0, 3), inner, max_size=2)  # keys the encoder turns
    ),
    max_leaves=60,
)


def _outcome(encode: Any, value: Any) -> Any:
    try:
        return encode(value)
    except ValueError as exc:  # NaN with allow_nan=False; a lone surrogate in UTF-8
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(value=ODD_VALUES, nesting=st.integers(0, 6), piece=st.integers(1, 40), run=st.integers(1, 5))
def test_a_value_encoded_in_pieces_is_what_one_call_encodes(
    value: Any, nesting: int, piece: int, run: int
) -> None:
    """Objects and arrays taken apart item by item, runs of scalars and slices of long
    strings each encoded alone: the same bytes as one call, and the same refusal."""
    for _ in range(nesting):
        value = [value, "s" * piece * 3, *range(piece)] if nesting % 2 else {"w": value}
    for encode in ENCODERS:
        whole = _outcome(lambda v, e=encode: e(v).encode(), value)
        with patch.object(events, "PIECE_CHARS", piece), patch.object(events, "RUN_ITEMS", run):
            assert _outcome(lambda v, e=encode: events.dumps_in_pieces(v, e), value) == whole


@pytest.mark.parametrize("piece", [3, 7, 40])
@pytest.mark.parametrize("levels", [3, 4, 5, 7, 8, 9, 10, 12])
def test_a_long_body_nested_one_level_too_deep_is_refused(piece: int, levels: int) -> None:
    """Arrays among runs of scalars, and objects, ``levels`` deep, each level long enough
    to be parsed in pieces: at most 8 deep is taken, one more is ``too_deep``."""
    value: Any = 0
    for level in range(levels):
        scalars = [*range(piece)]
        value = [*scalars, value, *scalars] if level % 3 else {"a": value, "b": piece}
    text = json.dumps(value)
    with patch.object(events, "PIECE_CHARS", piece):
        if levels <= 8:
            assert events.loads_strict(text, depth=8) == value
        else:
            with pytest.raises(events.InvalidJson, match="deeper than 8"):
                events.loads_strict(text, depth=8)


@pytest.mark.parametrize("levels", [7, 8, 9, 10])
def test_objects_parsed_among_a_run_of_scalars_are_checked_for_depth(levels: int) -> None:
    """Objects with no array in them parse in the same call as the scalars around them:
    their depth counts from the array they are in."""
    value: Any = 0
    for _ in range(levels - 1):
        value = {"a": value}
    value = [0, value, *range(80)]
    with patch.object(events, "PIECE_CHARS", 120):
        if levels <= 8:
            assert events.loads_strict(json.dumps(value), depth=8) == value
        else:
            with pytest.raises(events.InvalidJson, match="deeper than 8"):
                events.loads_strict(json.dumps(value), depth=8)
