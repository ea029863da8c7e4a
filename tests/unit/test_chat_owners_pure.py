"""What a chat's owner sees, the pure parts (``chat/owners.py``, ``chat/records.py``): a
chat's title, an owner's feed id (one no producer may create), the list's order."""

from __future__ import annotations

from broadcaster.chat.owners import Listed, _after, feed_id, owner_hash
from broadcaster.chat.records import title_of
from broadcaster.core import names


def test_a_chats_title_is_its_first_user_text_on_one_line() -> None:
    assert title_of([]) == ""
    system = {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief"}]}
    blank = {"id": "u0", "role": "user", "parts": [{"type": "file", "url": "x"}]}
    asked = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": " Two\n lines "}]}
    assert title_of([system, blank, asked]) == "Two lines"
    long = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "word " * 40}]}
    assert len(title_of([long])) == 80 and title_of([long]).endswith("…")


def test_an_owners_feed_is_a_name_producers_cannot_take() -> None:
    assert names.is_reserved(feed_id("sub:alice")) and names.is_stream_id(feed_id("sub:alice"))
    assert feed_id("sub:alice") != feed_id("sub:bob") != feed_id("")
    assert "alice" not in owner_hash("sub:alice")


def test_the_list_goes_newest_first_ties_by_id() -> None:
    newest, older = Listed("b", 2000), Listed("a", 1000)
    assert _after(older, newest) and not _after(newest, older)
    tie_low, tie_high = Listed("a", 1000), Listed("b", 1000)
    assert _after(tie_low, tie_high) and not _after(tie_high, tie_low)
