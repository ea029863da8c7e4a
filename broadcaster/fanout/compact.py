"""Compact replays: consecutive deltas of one part folded into one event, for a late
joiner or a resume that asks for it (pure: events in, events out).

A long answer is thousands of ``text-delta`` events of a few characters each; a late
joiner replaying it gets them all, with an id, a type and a JSON envelope apiece. Folded,
it gets one ``text-delta`` per run of deltas of the same part, carrying their deltas
joined, with the id of the *last* folded event: a ``Last-Event-ID`` resume from it is
exact, and the message a client rebuilds (text, reasoning, a tool's input) is the same,
byte for byte. Only events that are nothing but a delta fold (``type``, the part's id, the
delta); anything with more fields (provider metadata) is left as it is. Live events are
never folded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from broadcaster.core.events import Event

FOLDS = {
    "text-delta": ("id", "delta"),
    "reasoning-delta": ("id", "delta"),
    "tool-input-delta": ("toolCallId", "inputTextDelta"),
}
"""The delta events that fold: their type -> (the field naming the part, the delta)."""


def _foldable(event: Event) -> tuple[str, str, str] | None:
    """(type, part id, delta) of a bare delta event, else None."""
    fields = FOLDS.get(event.type)
    if fields is None:
        return None
    data: dict[str, Any] = event.json()
    key, delta = fields
    if set(data) != {"type", key, delta}:
        return None
    part, text = data[key], data[delta]
    if not isinstance(part, str) or not isinstance(text, str):
        return None
    return event.type, part, text


class Folder:
    """Folds a stream of events page by page: ``feed`` a page, get back what is final;
    the last run of deltas is held back until it ends or ``flush`` says the replay did."""

    def __init__(self) -> None:
        self._run: list[tuple[Event, str]] = []
        self._kind: tuple[str, str] | None = None
        self.folded = 0
        """Events folded away (so far)."""

    def feed(self, events: Iterable[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            found = _foldable(event)
            if found is not None and self._kind == found[:2]:
                self._run.append((event, found[2]))
                continue
            out += self.flush()
            if found is not None:
                self._kind = found[:2]
                self._run = [(event, found[2])]
            else:
                out.append(event)
        return out

    def flush(self) -> list[Event]:
        """The run held back, as one event (or none)."""
        run, self._run = self._run, []
        kind, self._kind = self._kind, None
        if not run:
            return []
        if len(run) == 1 or kind is None:
            return [run[0][0]]
        self.folded += len(run) - 1
        etype, part = kind
        key, delta = FOLDS[etype]
        last = run[-1][0]
        data = json.dumps(
            {"type": etype, key: part, delta: "".join(text for _, text in run)},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        return [Event(last.seq, etype, data, last.tag)]


def fold(events: Iterable[Event]) -> Iterator[Event]:
    """Every event of ``events``, consecutive deltas of one part folded."""
    folder = Folder()
    yield from folder.feed(events)
    yield from folder.flush()
