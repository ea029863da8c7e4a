"""Where a submit's message goes in the history the server keeps (``chat/placing.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster.chat.placing import (
    HistoryConflict,
    NoSuchMessage,
    Placed,
    place_message,
    place_messages,
)


def msg(mid: str, role: str = "user", text: str = "") -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": text or mid}]}


CHAT = [msg("u1"), msg("a1", "assistant"), msg("u2"), msg("a2", "assistant")]


def test_a_new_message_is_appended_and_only_it_is_written() -> None:
    assert place_message(CHAT, 4, msg("u3")) == Placed([*CHAT, msg("u3")], 4, [msg("u3")])


def test_an_answer_not_settled_yet_is_written_with_it() -> None:
    """The list holds three (the last answer is still folded from its events)."""
    assert place_message(CHAT, 3, msg("u3")) == Placed([*CHAT, msg("u3")], 3, [CHAT[3], msg("u3")])


def test_an_edit_replaces_the_message_and_drops_what_followed() -> None:
    edited = msg("u2", text="better question")
    assert place_message(CHAT, 4, edited) == Placed([*CHAT[:2], edited], 2, [edited])


def test_a_continuation_takes_the_last_answers_place() -> None:
    cont = {**msg("a2", "assistant"), "parts": [{"type": "tool-f", "toolCallId": "c"}]}
    assert place_message(CHAT, 4, cont) == Placed([*CHAT[:3], cont], 3, [cont])


def test_a_regenerate_cuts_at_the_answer_it_names() -> None:
    again = place_message(CHAT, 4, msg("u1"), regenerate=True, message_id="a1")
    assert again == Placed([msg("u1")], 0, [msg("u1")])
    last = place_message(CHAT, 4, msg("u2"), regenerate=True)
    assert last == Placed(CHAT[:3], 2, [msg("u2")])
    with pytest.raises(NoSuchMessage):
        place_message(CHAT, 4, msg("u2"), regenerate=True, message_id="u2")
    with pytest.raises(NoSuchMessage):
        place_message([msg("u1")], 1, msg("u1"), regenerate=True)


def test_the_whole_chat_sent_again_writes_what_it_adds() -> None:
    sent = [*CHAT, msg("u3")]
    assert place_messages(CHAT, 4, sent, refuse=True) == Placed(sent, 4, [msg("u3")])


def test_a_differing_earlier_turn_is_taken_or_refused() -> None:
    forged = [CHAT[0], msg("a1", "assistant", "forged"), *CHAT[2:], msg("u3")]
    assert place_messages(CHAT, 4, forged, refuse=False) == Placed(forged, 1, forged[1:])
    with pytest.raises(HistoryConflict) as refused:
        place_messages(CHAT, 4, forged, refuse=True)
    assert refused.value.at == 1


def test_a_client_that_never_saw_the_last_answer_keeps_the_old_way() -> None:
    assert place_messages(CHAT, 4, [*CHAT[:3], msg("u3")], refuse=True) is None
