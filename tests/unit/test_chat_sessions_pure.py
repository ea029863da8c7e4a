"""The pure parts of chat sessions: a generation's SSE bytes as the chat's stream sends
them, its resume points, the chat's followers woken by turn, and what makes an
``Idempotency-Key`` and a body the same."""

from __future__ import annotations

import pytest

from broadcaster.chat.followers import ChatFollowers
from broadcaster.chat.records import generation_id, generation_prefix
from broadcaster.core import names, sse
from broadcaster.generations.idempotency import KEY_MAX, BadKey, body_hash, check_key
from broadcaster.viewers.chat_follow import announcement, with_turn

pytestmark = pytest.mark.unit

FRAME = b'id: 7.0a1b2c3d\nevent: text-delta\ndata: {"delta":"say id: 5"}\n\n'
END = b'id: 8.0a1b2c3e\nevent: finish\ndata: {"type":"finish"}\n\n' + sse.DONE


def test_each_frame_id_gets_its_turn_and_done_is_left_out() -> None:
    chunk = with_turn(FRAME + END, 3)
    assert chunk == (
        b'id: 3:7.0a1b2c3d\nevent: text-delta\ndata: {"delta":"say id: 5"}\n\n'
        b'id: 3:8.0a1b2c3e\nevent: finish\ndata: {"type":"finish"}\n\n'
    )
    assert with_turn(sse.PING, 3) == sse.PING
    assert with_turn(sse.DONE, 3) == b""


def test_the_announcement_opens_its_turn_at_seq_0() -> None:
    frame = announcement(2, "gen", {"id": "u2"})
    assert frame.startswith(b"id: 2:0\ndata: {") and frame.endswith(b"\n\n")
    assert b'"type":"data-chat-turn"' in frame and b'"transient":true' in frame


def test_chat_resume_points() -> None:
    assert names.chat_resume_point("3:7.0a1b2c3d") == (3, 7)
    assert names.chat_resume_point("0:0") == (0, 0)
    for bad in ("7.0a1b2c3d", "3:", ":7", "3:7.xyz", "3:7\n", "-1:2", "1" * 10 + ":1"):
        assert names.chat_resume_point(bad) is None, bad


def test_followers_are_woken_by_their_chats_turns_only() -> None:
    followers = ChatFollowers()
    with followers.follow("a") as a, followers.follow("b") as b:
        followers.woken("turn", "a")
        followers.woken("chat", "b")  # another kind of wake: not a turn
        assert a.is_set() and not b.is_set()
        followers.missed()
        assert b.is_set()
        assert followers.followers == 2
    assert followers.followers == 0


def test_a_chats_generation_ids_share_its_prefix_and_no_other_chats() -> None:
    ids = {generation_id("a") for _ in range(3)}
    assert len(ids) == 3 and all(names.is_stream_id(i) for i in ids)
    assert all(i.startswith(generation_prefix("a")) for i in ids)
    assert not generation_id("a-b").startswith(generation_prefix("a"))
    assert names.is_stream_id(generation_id("x" * 64))


def test_idempotency_keys_and_bodies() -> None:
    assert check_key("abc") == "abc"
    assert check_key('"abc"') == "abc"
    assert check_key("k" * KEY_MAX) == "k" * KEY_MAX
    for bad in ("", "k" * (KEY_MAX + 1), "tab\tkey", "é"):
        with pytest.raises(BadKey):
            check_key(bad)
    assert body_hash({"a": 1, "b": [1, 2]}) == body_hash({"b": [1, 2], "a": 1})
    assert body_hash({"a": 1}) != body_hash({"a": 2})
