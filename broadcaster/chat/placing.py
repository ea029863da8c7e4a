"""Where a submit's message goes in the chat the server keeps: the chat the answer is to
see, and what of the record's history list stays and what is pushed after it. Pure.

A submit sends ``{id, message}`` (the AI SDK's ``prepareSendMessagesRequest`` sending
only ``messages.at(-1)``): a message of a new id is appended; one with the id of an
earlier user message (the AI SDK's edit) replaces it and drops what followed; an
assistant message with the id of the chat's last (a continuation: a client tool's
output) takes its place; ``trigger: "regenerate-message"`` drops the answer it names
(``messageId``, else the last answer) and what followed, and answers again.

A submit that sends ``{id, messages}`` (the whole chat, as the AI SDK does by default)
is compared with the record: what extends it is appended; where an earlier turn differs,
the deployment either takes the client's (``take``: from the first difference on) or
refuses (``HistoryConflict``).

``so_far`` is the chat as the record holds it (its list, then its latest answer while
that is not settled into the list); ``listed`` the length of the list itself.
``place_at_end`` places one message knowing only the chat's end (``End``): its last
messages and the positions of the ids it names, whatever the chat's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Placed:
    """The chat the answer sees (``messages``), the record's list entries kept
    (``keep``) and those pushed after them (``push``)."""

    messages: list[Message]
    keep: int
    push: list[Message]
    seen: str | None = None
    """The chat's generation when it was read (None: no chat): the submit's turn starts
    only if it still is (another submit's history would be cut by this one's ``keep``)."""
    whole: bool = True
    """Whether ``messages`` is the whole chat; else its end, from the chat's end as read
    (``place_at_end``): the answer's request names the record's turns."""


class HistoryConflict(Exception):
    """A submit whose earlier turns differ from the chat's record; ``at``: the first."""

    def __init__(self, at: int) -> None:
        super().__init__(f"message {at} differs from the chat's record")
        self.at = at


class NoSuchMessage(Exception):
    """A regenerate names a message the chat does not hold (or there is no answer)."""


def _placed(so_far: list[Message], listed: int, cut: int, tail: list[Message]) -> Placed:
    """The chat cut after its first ``cut`` messages, then ``tail``."""
    keep = min(cut, listed)
    return Placed([*so_far[:cut], *tail], keep, [*so_far[keep:cut], *tail])


def _position(so_far: list[Message], message_id: Any) -> int | None:
    return next((i for i, m in enumerate(so_far) if m.get("id") == message_id), None)


def place_message(
    so_far: list[Message],
    listed: int,
    message: Message,
    *,
    regenerate: bool = False,
    message_id: str | None = None,
) -> Placed:
    """Where ``message`` goes (``{id, message}``)."""
    if regenerate:
        so_far = so_far[: _regenerated(so_far, message_id)]
        listed = min(listed, len(so_far))
    at = _position(so_far, message.get("id"))
    if at is None:
        return _placed(so_far, listed, len(so_far), [message])
    return _placed(so_far, listed, at, [message])


def _regenerated(so_far: list[Message], message_id: str | None) -> int:
    """Where a regenerate cuts the chat: at the answer it names, else at the last."""
    if message_id is not None:
        at = _position(so_far, message_id)
    else:
        answers = [i for i, m in enumerate(so_far) if m.get("role") == "assistant"]
        at = answers[-1] if answers else None
    if at is None or so_far[at].get("role") != "assistant":
        raise NoSuchMessage(message_id or "(the last answer)")
    return at


def place_messages(
    so_far: list[Message], listed: int, sent: list[Message], *, refuse: bool
) -> Placed | None:
    """Where the messages of ``{id, messages}`` go; None when they leave out the chat's
    latest answer (a client that sent again a message whose answer it never saw: the
    caller keeps the chat so far, then what was sent, as before)."""
    if so_far and so_far[-1].get("role") == "assistant":
        latest = so_far[-1].get("id")
        if latest not in {m.get("id") for m in sent}:
            return None
    same = 0
    for ours, theirs in zip(so_far, sent, strict=False):
        if ours != theirs:
            break
        same += 1
    # The last message sent may differ: it is the new one (or a continuation of the
    # last answer, whose results the record gives back).
    if same < min(len(so_far), len(sent) - 1) and refuse:
        raise HistoryConflict(same)
    return _placed(so_far, listed, same, sent[same:])


@dataclass(frozen=True, slots=True)
class End:
    """The end of a chat: ``so_far[offset:]`` (``tail``), the list's length, and the
    positions in the list of some message ids."""

    offset: int
    tail: list[Message]
    listed: int
    places: dict[str, int]

    def position(self, message_id: Any) -> int | None:
        """Where ``message_id`` is in the chat; None if not there."""
        for i, message in enumerate(self.tail):
            if message.get("id") == message_id:
                return self.offset + i
        at = self.places.get(message_id) if isinstance(message_id, str) else None
        return at if at is not None and at < self.offset else None


class NotAtEnd(Exception):
    """A submit the chat's end does not place (a regenerate of an answer before it): it
    is placed against the whole chat (``place_message``)."""


def place_at_end(
    end: End, message: Message, *, regenerate: bool = False, message_id: str | None = None
) -> Placed:
    """Where ``message`` goes, as ``place_message`` says, from the chat's ``end``; its
    ``messages`` are the chat's end up to the message (``whole`` False)."""
    total, listed = end.offset + len(end.tail), end.listed
    if regenerate:
        total = _regenerated_at_end(end, message_id)
        listed = min(listed, total)
    at = end.position(message.get("id"))
    cut = total if at is None or at >= total else at
    keep = min(cut, listed)
    if keep < cut and keep < end.offset:
        raise NotAtEnd
    push = [*end.tail[keep - end.offset : cut - end.offset], message] if keep < cut else [message]
    before = end.tail[: max(cut - end.offset, 0)]
    return Placed([*before, message], keep, push, whole=False)


def _regenerated_at_end(end: End, message_id: str | None) -> int:
    """Where a regenerate cuts the chat, if its end shows it."""
    if message_id is not None:
        at = end.position(message_id)
        if at is not None and at < end.offset:
            raise NotAtEnd
    else:
        answers = [i for i, m in enumerate(end.tail) if m.get("role") == "assistant"]
        if not answers and end.offset:
            raise NotAtEnd
        at = end.offset + answers[-1] if answers else None
    if at is None or end.tail[at - end.offset].get("role") != "assistant":
        raise NoSuchMessage(message_id or "(the last answer)")
    return at
