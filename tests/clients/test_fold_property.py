"""The history a reload shows (``chat/ui_message.py``'s fold, which
``GET /v1/chat/{id}/messages`` answers with) equals what the AI SDK's own
``readUIMessageStream`` builds from the live stream, part for part: streams of every part
type drawn by hypothesis (``tests/support/ui_streams.py``), each served as the SSE body a
tab reads, parsed by the SDK's transport and assembled by its reader
(``tests/clients/aisdk/fold_streams.mjs``), in the AI SDK 6 and, for the parts only the
AI SDK 7 has (``reasoning-file``, ``custom``), in the AI SDK 7.

Needs node >= 20 and the npm packages of tests/clients/aisdk and tests/clients/workflow;
without them the test fails and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.chat.ui_message import UIMessageFold
from tests.support import long_form, node_host
from tests.support.procs import ROOT
from tests.support.ui_streams import SDK6, SDK7, ui_stream

SDK6_SCRIPT = ROOT / "tests" / "clients" / "aisdk" / "fold.mjs"
SDK7_SCRIPT = ROOT / "tests" / "clients" / "workflow" / "fold.mjs"
BATCH = 8
"""Streams read by one run of the script."""


def _missing(script: Path) -> None:
    missing = node_host.missing_node()
    if not missing and not (script.parent / "node_modules" / "ai" / "package.json").is_file():
        missing = f"run npm ci --prefix {script.parent.relative_to(ROOT)} (make test does this)"
    if missing:
        pytest.fail(f"the fold's property test needs: {missing}", pytrace=False)


def sdk_messages(script: Path, streams: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each stream as the SDK's reader left it: ``{message, errors}``."""
    code, out, err = node_host.run(script, [], 60, json.dumps({"streams": streams}))
    assert code == 0, f"{script.name} failed ({code}): {err[-2000:]}"
    found: list[dict[str, Any]] = json.loads(out)
    return found


def folded(stream: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the history holds of the stream: the fold's message, None before any."""
    fold = UIMessageFold({"id": "", "role": "assistant", "parts": []})
    for chunk in stream:
        fold.feed(json.loads(json.dumps(chunk)))
    return fold.message if fold.fed else None


def check(script: Path, streams: list[list[dict[str, Any]]]) -> None:
    for stream, read in zip(streams, sdk_messages(script, streams), strict=True):
        said = [c["errorText"] for c in stream if c["type"] == "error"]
        assert read["errors"] == said, f"the SDK refused the drawn stream: {read['errors']}"
        assert folded(stream) == read["message"], json.dumps(stream)


PROPERTY = settings(
    max_examples=long_form.budget(10, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@long_form.mark
@PROPERTY
@given(st.lists(ui_stream(SDK6), min_size=1, max_size=BATCH))
def test_the_history_is_what_the_ai_sdk_6_reads(streams: list[list[dict[str, Any]]]) -> None:
    _missing(SDK6_SCRIPT)
    check(SDK6_SCRIPT, streams)


@long_form.mark
@PROPERTY
@given(st.lists(ui_stream(SDK7), min_size=1, max_size=BATCH))
def test_the_history_is_what_the_ai_sdk_7_reads(streams: list[list[dict[str, Any]]]) -> None:
    _missing(SDK7_SCRIPT)
    check(SDK7_SCRIPT, streams)
