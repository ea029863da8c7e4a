"""A tool call's input while it streams, read as the AI SDK reads it
(``chat/partial_json.py``, the SDK's ``fixJson``); the fold's property test checks the
same against the SDK itself (tests/clients/test_fold_property.py)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.chat.partial_json import MISSING, fix_json, parse_partial
from tests.support import long_form


def test_cut_json_is_closed_as_the_sdk_closes_it() -> None:
    assert fix_json('{"city": "Pa') == '{"city": "Pa"}'
    assert fix_json('{"a": [1, 2') == '{"a": [1, 2]}'
    assert fix_json('{"a": tr') == '{"a": true}'
    assert fix_json('{"a": 1.') == '{"a": 1}'
    assert fix_json('{"a": "x\\') == '{"a": "x"}'
    assert fix_json('{"a": "\\u00') == '{"a": ""}'
    assert fix_json('{"a"') == "{}"
    assert fix_json("") == ""


def test_what_cannot_be_read_has_no_value() -> None:
    assert parse_partial("") is MISSING
    assert parse_partial("}") is MISSING
    assert parse_partial("NaN") is MISSING  # JSON.parse refuses it; Python's would not
    assert parse_partial('{"a": nul') == {"a": None}


@long_form.mark
@settings(max_examples=long_form.budget(25, 100))
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda i: st.lists(i) | st.dictionaries(st.text(), i),
    )
)
def test_every_prefix_of_json_reads_and_the_whole_reads_as_itself(value: object) -> None:
    text = json.dumps(value)
    assert parse_partial(text) == value
    for cut in range(1, len(text)):
        fix_json(text[:cut])  # never raises
