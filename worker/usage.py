"""What model calls used, in one shape whatever the provider (``Usage``: all input, the
cache's reads and writes among it, output, reasoning among it), as a model call's raw
events carry it (Anthropic's shape, which every provider's stream is mapped to: ``raw``
and ``of_raw``), and an attempt's ``Tally`` of its calls (summed, and per attempt),
which the stream's metadata keeps so that a worker taking the generation over goes on
counting. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core.events import Usage

REASONING = "reasoning_tokens"
"""The raw usage's count of reasoning tokens: not Anthropic's (it counts thinking in its
output and says no more), set by the providers that report them apart (OpenAI's)."""

_RAW = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def raw(usage: Usage) -> dict[str, int]:
    """``usage`` as a raw ``message_delta`` carries it: Anthropic's counts (its
    ``input_tokens`` the uncached input alone), with the reasoning tokens beside."""
    return {
        "input_tokens": usage.no_cache,
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
        REASONING: usage.reasoning,
    }


def of_raw(counts: dict[str, int]) -> Usage:
    """The usage a model call's raw counts say (``raw``'s shape; a missing count is 0)."""
    read = counts.get("cache_read_input_tokens", 0)
    written = counts.get("cache_creation_input_tokens", 0)
    return Usage(
        input=counts.get("input_tokens", 0) + read + written,
        output=counts.get("output_tokens", 0),
        cache_read=read,
        cache_write=written,
        reasoning=counts.get(REASONING, 0),
    )


def raw_counts(usage: Any) -> dict[str, int]:
    """The counts a raw event's ``usage`` object holds (those that are counts)."""
    got = usage if isinstance(usage, dict) else {}
    return {
        name: value
        for name in (*_RAW, REASONING)
        if isinstance(value := got.get(name), int) and not isinstance(value, bool) and value >= 0
    }


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


__all__ = ["REASONING", "Tally", "Usage", "of_raw", "raw", "raw_counts", "since"]
