"""``Offloop``: what a chat's record keeps of a submit's messages, and a generation's
request, are the same wherever they are encoded, and large ones are encoded off the
event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from unittest.mock import patch

import pytest

from broadcaster.chat import records
from broadcaster.generations import lifecycle
from broadcaster.http import offloop
from broadcaster.http.offloop import BODY_BYTES, INLINE_BYTES, ITEM_BYTES, Offloop

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def _messages(n: int, text: str = "é\u2028") -> list[dict[str, Any]]:
    return [
        {"id": f"m{i}", "role": "user", "parts": [{"type": "text", "text": f"{text} {i}"}]}
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [1, INLINE_BYTES // ITEM_BYTES - 1, INLINE_BYTES // ITEM_BYTES])
async def test_what_the_record_keeps_is_the_same_wherever_it_is_encoded(n: int) -> None:
    pool = Offloop(1, 0)
    try:
        messages = _messages(n)
        assert await pool.kept(messages) == records.kept_as(messages)
        assert await records.kept_here(messages) == records.kept_as(messages)
    finally:
        await pool.aclose()


def traced(real: Callable[[Any], T]) -> tuple[list[bool], Callable[[Any], T]]:
    """``real``, noting for each call whether it ran on the loop's (main) thread."""
    where: list[bool] = []

    def call(value: Any) -> T:
        where.append(threading.current_thread() is threading.main_thread())
        return real(value)

    return where, call


async def test_many_messages_are_encoded_off_the_loop_and_few_on_it() -> None:
    pool = Offloop(1, 0)
    where, traced_json = traced(records.message_json)
    try:
        with (
            patch.object(records, "message_json", traced_json),
            patch.object(offloop, "message_json", traced_json),
        ):
            await pool.kept(_messages(INLINE_BYTES // ITEM_BYTES))
            assert where and not any(where)
            where.clear()
            await pool.kept(_messages(2))
            assert where == [True, True]
            where.clear()
            BODY_BYTES.set(INLINE_BYTES)  # a few messages, from a large body: huge ones
            await pool.kept(_messages(2))
            assert where == [False, False]
    finally:
        await pool.aclose()


async def test_a_request_from_a_large_body_is_encoded_off_the_loop_as_it_would_be_on_it() -> None:
    pool = Offloop(1, 0)
    real = lifecycle.request_json
    where, traced_json = traced(real)
    request = {"messages": _messages(3), "provider": "fake"}
    try:
        with patch.object(offloop, "request_json", traced_json):
            assert await pool.request_json(request) == real(request)
            BODY_BYTES.set(INLINE_BYTES)
            assert await pool.request_json(request) == real(request)
        assert where == [True, False]
        assert await lifecycle.request_json_here(request) == real(request)
    finally:
        await pool.aclose()
