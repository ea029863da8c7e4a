"""The seam of a continued answer: the new model call's events joined to the part a lost
worker left open, with the words the model repeats at the join dropped. Pure: no I/O.

A model asked to go on tends to repeat the last words it was shown. ``SeamTrim`` drops
the longest start of the continuation that is also an end of the partial text, matched
from a word's start within a bounded window, holding the first deltas back only while
they could still be a repeat. ``Seam`` applies it to a call's events: no
``start-step``, and the first text block written into the open part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

WINDOW = 200
"""Characters of the partial text's end that a repeat is looked for in: a repeat longer
than this is shown (the model went back further than "the last few words")."""


def _tail(partial: str, window: int) -> str:
    """The partial text's last ``window`` characters, from a word's start."""
    if len(partial) <= window:
        return partial
    tail = partial[-window:]
    cut = next((i for i in range(1, len(tail)) if tail[i - 1].isspace()), len(tail))
    return tail[cut:]


def _word_starts(tail: str) -> list[int]:
    """Where a word begins in ``tail`` (a repeat is matched from one of these)."""
    return [
        i
        for i, ch in enumerate(tail)
        if not ch.isspace() and (i == 0 or tail[i - 1].isspace() or not tail[i - 1].isalnum())
    ]


@dataclass
class SeamTrim:
    """The seam trim of one continuation: ``feed`` each text delta, ``end`` when its block
    ends; each returns the text to show now."""

    partial: str
    window: int = WINDOW
    held: str = ""
    decided: bool = False
    dropped: str = ""
    """What was dropped as a repeat (for logs and tests)."""
    _tail: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._tail = _tail(self.partial, self.window)
        self.decided = not self._tail.strip()

    def feed(self, delta: str) -> str:
        if self.decided:
            return delta
        self.held += delta
        return self._decide(final=False)

    def end(self) -> str:
        """The block ended: whatever is held goes out, trimmed as far as it matches."""
        return "" if self.decided else self._decide(final=True)

    def _decide(self, *, final: bool) -> str:
        body = self.held.lstrip()
        if not body and not final:
            return ""  # only whitespace yet: cannot tell
        lead = len(self.held) - len(body)
        starts = [self._tail[s:] for s in _word_starts(self._tail)]
        # Still possibly the beginning of a longer repeat: hold on.
        if not final and any(end.startswith(body) and len(body) < len(end) for end in starts):
            return ""
        repeats = [end for end in starts if body.startswith(end)]
        if final and body:  # a block that ends inside a repeat repeated nothing new
            repeats += [body for end in starts if end.startswith(body)]
        self.decided = True
        held, self.held = self.held, ""
        if repeats:
            longest = max(repeats, key=len)
            self.dropped = held[: lead + len(longest)]
            return held[lead + len(longest) :]
        if lead and self.partial[-1:].isspace():
            self.dropped = held[:lead]  # no double space at the seam
            return body
        return held


@dataclass
class Seam:
    """A continuation call's events, joined to the step it continues."""

    open_text: str | None
    """The id of the text part left open, which the first text block streams into."""
    trim: SeamTrim
    _first: str | None = None
    """The first text block's own id (from its ``text-start``)."""
    _seen_text: bool = False

    def apply(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            out += self._one(event)
        return out

    def _one(self, event: Event) -> list[Event]:
        kind = event.get("type")
        if kind == "start-step":
            return []
        if kind == "text-start" and not self._seen_text:
            self._seen_text = True
            self._first = event.get("id")
            if self.open_text is None:
                return [event]
            return []
        if self._first is None or event.get("id") != self._first:
            return [event]
        part = self.open_text or self._first
        if kind == "text-delta":
            text = self.trim.feed(str(event.get("delta") or ""))
            return [{**event, "id": part, "delta": text}] if text else []
        if kind == "text-end":
            rest = self.trim.end()
            delta = [{"type": "text-delta", "id": part, "delta": rest}] if rest else []
            return [*delta, {**event, "id": part}]
        return [{**event, "id": part}] if "id" in event else [event]


__all__ = ["WINDOW", "Seam", "SeamTrim"]
