"""Where a submit's message goes in the history the server keeps (``chat/placing.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster.chat.placing import (
    End,
    HistoryConflict,
    NoSuchMessage,
    NotAtEnd,
    Placed,
    place_at_end,
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


def _end_of(so_far: list[dict[str, Any]], listed: int, read: int) -> End:
    """The end a submit reads: the list's last ``read`` messages, the rest folded."""
    offset = max(listed - read, 0)
    places = {str(m["id"]): i for i, m in enumerate(so_far[:listed])}
    return End(offset, so_far[offset:], listed, places)


@pytest.mark.parametrize("read", [1, 2, 4])
@pytest.mark.parametrize("listed", [3, 4])
@pytest.mark.parametrize(
    ("message", "regenerate", "message_id"),
    [
        (msg("u3"), False, None),
        (msg("u2", text="edited"), False, None),
        (msg("u1", text="edited far back"), False, None),
        (msg("a2", "assistant", "a continuation"), False, None),
        (msg("u2"), True, None),
        (msg("u2"), True, "a2"),
    ],
)
def test_the_chat_s_end_places_a_message_as_the_whole_chat_does(
    message: dict[str, Any], regenerate: bool, message_id: str | None, listed: int, read: int
) -> None:
    whole = place_message(CHAT, listed, message, regenerate=regenerate, message_id=message_id)
    try:
        end = place_at_end(
            _end_of(CHAT, listed, read), message, regenerate=regenerate, message_id=message_id
        )
    except NotAtEnd:
        return  # placed against the whole chat instead
    assert (end.keep, end.push) == (whole.keep, whole.push)
    assert whole.messages[-len(end.messages) :] == end.messages and not end.whole


def test_a_regenerate_of_an_answer_before_the_end_asks_for_the_whole_chat() -> None:
    with pytest.raises(NotAtEnd):
        place_at_end(_end_of(CHAT, 4, 2), msg("u1"), regenerate=True, message_id="a1")
    with pytest.raises(NoSuchMessage):
        place_at_end(_end_of(CHAT, 4, 2), msg("u1"), regenerate=True, message_id="nope")
