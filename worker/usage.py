"""What model calls used, in one shape whatever the provider: a call's ``Usage``, and an
attempt's ``Tally`` of its calls (summed, and the output of each attempt), which the
stream's metadata keeps so that a worker taking the generation over goes on counting.
Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one model call (or several, summed) used."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    def stored(self) -> dict[str, int]:
        """As the stream's metadata keeps it (``usage``)."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    def ui(self) -> dict[str, int]:
        """As the ``finish`` event's ``messageMetadata.usage`` says it."""
        return {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens}

    @classmethod
    def of_stored(cls, found: Any) -> Usage:
        got = found if isinstance(found, dict) else {}
        return cls(int(got.get("input_tokens") or 0), int(got.get("output_tokens") or 0))


@dataclass
class Tally:
    """An attempt's model calls: their usage summed (None before one reported any), the
    model that answered last, and the output tokens of each attempt (a call cut off with
    its worker never reported its own: the provider billed them all the same)."""

    attempt: int = 1
    usage: Usage | None = None
    model: str | None = None
    by_attempt: dict[str, int] = field(default_factory=dict)

    def add(self, usage: Usage, model: str | None) -> None:
        """A model call that started (its ``message_start`` came) reported ``usage``."""
        self.usage = (self.usage or Usage()) + usage
        self.model = model or self.model
        key = str(self.attempt)
        self.by_attempt[key] = self.by_attempt.get(key, 0) + usage.output_tokens

    def meta(self) -> dict[str, str]:
        """The stream's metadata fields that keep the tally (none before any usage), and
        the model that answered (what the user's usage is counted under)."""
        if self.usage is None:
            return {}
        kept = {
            "usage": json.dumps(self.usage.stored()),
            "usage_attempts": json.dumps(self.by_attempt),
        }
        return kept | ({"model": self.model} if self.model else {})

    def finish_metadata(self) -> dict[str, Any]:
        """The ``finish`` event's ``messageMetadata``: the model and the usage, and after
        a takeover what each attempt's calls reported."""
        metadata: dict[str, Any] = {"model": self.model, "usage": (self.usage or Usage()).ui()}
        if self.attempt > 1:
            metadata["outputTokensByAttempt"] = dict(self.by_attempt)
        return metadata

    @classmethod
    def resumed(cls, meta: dict[str, str], attempt: int, *, steps_kept: bool) -> Tally:
        """The tally an attempt that takes the generation over starts from: the usage of
        the steps it keeps (none if it keeps none), and every attempt's output."""
        usage = None
        if steps_kept and meta.get("usage"):
            usage = Usage.of_stored(json.loads(meta["usage"]))
        return cls(attempt, usage, meta.get("steps_model") or None, _by_attempt(meta))


def _by_attempt(meta: dict[str, str]) -> dict[str, int]:
    try:
        found = json.loads(meta.get("usage_attempts") or "{}")
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


__all__ = ["Tally", "Usage"]
