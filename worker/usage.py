"""What an attempt's model calls used: each call's ``Usage`` (the project's one shape,
``broadcaster.core.events``: all input, the cache's reads and writes among it, output,
reasoning among it; each provider's stream reports it so, ``worker.providers.parts``)
summed in a ``Tally``, with each attempt's, which the stream's metadata keeps so that a
worker taking the generation over goes on counting. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core.events import Usage


def since(now: Usage, before: Usage) -> Usage:
    """What was used after ``before``, of a count that has reached ``now`` (never below 0)."""
    return Usage(*(max(0, a - b) for a, b in zip(now.counts(), before.counts(), strict=True)))


@dataclass
class Tally:
    """An attempt's model calls: their usage summed (None before one reported any), the
    model that answered last, and each attempt's usage (a call cut off with its worker
    never reported its own: the provider billed them all the same)."""

    attempt: int = 1
    usage: Usage | None = None
    model: str | None = None
    by_attempt: dict[str, Usage] = field(default_factory=dict)

    def add(self, usage: Usage, model: str | None) -> None:
        """A model call that started (its ``message_start`` came) reported ``usage``."""
        self.usage = (self.usage or Usage()) + usage
        self.model = model or self.model
        key = str(self.attempt)
        self.by_attempt[key] = self.by_attempt.get(key, Usage()) + usage

    def meta(self) -> dict[str, str]:
        """The stream's metadata fields that keep the tally (none before any usage), and
        the model that answered (what the user's usage is counted under)."""
        if self.usage is None:
            return {}
        kept = {
            "usage": json.dumps(self.usage.snake()),
            "usage_attempts": json.dumps({k: u.snake() for k, u in self.by_attempt.items()}),
        }
        return kept | ({"model": self.model} if self.model else {})

    def finish_metadata(self) -> dict[str, Any]:
        """The ``finish`` event's ``messageMetadata``: the model and the usage (the AI
        SDK's ``LanguageModelUsage``), and after a takeover what each attempt's calls
        reported (``usageByAttempt``; ``outputTokensByAttempt``, their output alone)."""
        used = self.usage or Usage()
        metadata: dict[str, Any] = {"model": self.model, "usage": used.ai_sdk()}
        if self.attempt > 1:
            metadata["outputTokensByAttempt"] = {k: u.output for k, u in self.by_attempt.items()}
            metadata["usageByAttempt"] = {k: u.ai_sdk() for k, u in self.by_attempt.items()}
        return metadata

    @classmethod
    def resumed(cls, meta: dict[str, str], attempt: int, *, steps_kept: bool) -> Tally:
        """The tally an attempt that takes the generation over starts from: the usage of
        the steps it keeps (none if it keeps none), and every attempt's usage."""
        usage = None
        if steps_kept and meta.get("usage"):
            usage = Usage.from_snake(json.loads(meta["usage"]))
        return cls(attempt, usage, meta.get("steps_model") or None, _by_attempt(meta))


def _by_attempt(meta: dict[str, str]) -> dict[str, Usage]:
    """Each attempt's usage as the metadata keeps it (a stream written before the usage
    had its kinds kept each attempt's output tokens alone)."""
    try:
        found = json.loads(meta.get("usage_attempts") or "{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(k): Usage(output=v) if isinstance(v, int) else Usage.from_snake(v)
        for k, v in found.items()
    }


__all__ = ["Tally", "Usage", "since"]
