"""Prompt caching as the model APIs bill it, for the local model servers: which input
tokens of a request are read from a cache, written to it, or neither. Pure: no I/O.

**Anthropic** (``AnthropicCache``): a request's prompt is its tools, then its system
blocks, then its messages' blocks, in that order. A ``cache_control`` breakpoint on a
block makes the prompt up to and including that block a cacheable prefix. A prefix is
read when a request before wrote it, unexpired; the API looks for one at each
breakpoint and up to ``lookback`` blocks before it. Everything from the longest prefix
read to the last breakpoint is written; what follows the last breakpoint is plain input.
A prefix of fewer than ``min_tokens`` is neither read nor written. More than four
breakpoints is the API's 400.

**OpenAI** (``OpenAICache``): caching is automatic. A prompt of ``min_tokens`` or more is
kept; a later prompt that begins with one kept under the same ``prompt_cache_key`` reads
the common part, in steps of ``step`` tokens. The fake does not model the API's routing
(a key sends similar prompts to one machine): prompts without a key share one cache.

Tokens are counted as a quarter of the characters of each block's JSON (at least one):
what matters to these figures is the share of the prompt each kind takes, and that is
the same under any tokenizer that counts the same text the same way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_BREAKPOINTS = 4
"""Anthropic refuses a request with more ``cache_control`` blocks than this."""


def count_tokens(value: Any) -> int:
    """A block's tokens: a quarter of its JSON's characters, at least one."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, len(text) // 4)


def _without_cache_control(block: Any) -> Any:
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


@dataclass(frozen=True, slots=True)
class Bill:
    """A request's input tokens by how they are billed."""

    plain: int
    cache_read: int
    cache_write: int

    @property
    def total(self) -> int:
        return self.plain + self.cache_read + self.cache_write


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices of input tokens relative to a plain one: Anthropic's by default (a cache
    read a tenth, a write of the five-minute cache 1.25 times)."""

    plain: float = 1.0
    cache_read: float = 0.1
    cache_write: float = 1.25

    def cost(self, bill: Bill) -> float:
        return (
            bill.plain * self.plain
            + bill.cache_read * self.cache_read
            + bill.cache_write * self.cache_write
        )


def anthropic_usage(usage: Any, bill: Bill) -> dict[str, Any]:
    """A Messages usage object with the input counts ``bill`` says."""
    return {
        **(usage if isinstance(usage, dict) else {}),
        "input_tokens": bill.plain,
        "cache_read_input_tokens": bill.cache_read,
        "cache_creation_input_tokens": bill.cache_write,
    }


def anthropic_blocks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The prompt's blocks in cache order, each with where it is in the request
    (``tools[0]``, ``system[1]``, ``messages[2].content[0]``); a string is the text block
    the API makes of it."""
    return [(where, block) for where, _, block in _prompt(body)]


def _prompt(body: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """``anthropic_blocks``, each with its role (``tools`` and ``system`` for theirs)."""
    out: list[tuple[str, str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        out.append((f"tools[{i}]", "tools", tool))
    system = body.get("system")
    if isinstance(system, str):
        out.append(("system", "system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        out += [(f"system[{i}]", "system", b) for i, b in enumerate(system)]
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        role = str(message.get("role")) if isinstance(message, dict) else ""
        if isinstance(content, str):
            out.append((f"messages[{m}].content", role, {"type": "text", "text": content}))
        elif isinstance(content, list):
            out += [(f"messages[{m}].content[{b}]", role, blk) for b, blk in enumerate(content)]
    return out


def without_breakpoints(value: Any) -> Any:
    """``value`` (a request, its messages) with every ``cache_control`` left out: what the
    cache compares of two prompts."""
    if isinstance(value, list):
        return [without_breakpoints(v) for v in value]
    if isinstance(value, dict):
        return {k: without_breakpoints(v) for k, v in value.items() if k != "cache_control"}
    return value


def breakpoints(body: Any) -> list[str]:
    """Where a Messages request carries ``cache_control``, in cache order."""
    if not isinstance(body, dict):
        return []
    return [
        where
        for where, block in anthropic_blocks(body)
        if isinstance(block, dict) and block.get("cache_control")
    ]


@dataclass
class AnthropicCache:
    """Anthropic's prompt cache, as the module says; ``bill(body)`` answers one request
    and keeps what it wrote. ``clock`` is for tests that let entries expire."""

    min_tokens: int = 1024
    ttl: float = 300.0
    lookback: int = 20
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, float] = field(default_factory=dict)

    def bill(self, body: dict[str, Any]) -> Bill:
        blocks = _prompt(body)
        marks = [
            i
            for i, (_, _, b) in enumerate(blocks)
            if isinstance(b, dict) and b.get("cache_control")
        ]
        if len(marks) > MAX_BREAKPOINTS:
            raise ValueError(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {len(marks)}."
            )
        # The role is part of what a block says: "hi" from the user is not "hi" answered.
        sums, hashes = _prefixes(
            [_without_cache_control(b) for _, _, b in blocks], [role for _, role, _ in blocks]
        )
        total = sums[-1] if sums else 0
        now = self.clock()
        hit = self._longest_hit(marks, hashes, now)
        read = sums[hit] if hit is not None else 0
        written = 0
        for mark in marks:
            if sums[mark] >= self.min_tokens:
                self._entries[hashes[mark]] = now + self.ttl
                if hit is None or mark > hit:
                    written = max(written, sums[mark] - read)
        if hit is not None:
            self._entries[hashes[hit]] = now + self.ttl  # a read refreshes the entry
        return Bill(total - read - written, read, written)

    def _longest_hit(self, marks: Sequence[int], hashes: Sequence[str], now: float) -> int | None:
        candidates = {i for mark in marks for i in range(max(0, mark - self.lookback), mark + 1)}
        found = [i for i in candidates if self._entries.get(hashes[i], 0.0) > now]
        return max(found) if found else None


def _prefixes(
    blocks: Sequence[Any], roles: Sequence[str] | None = None
) -> tuple[list[int], list[str]]:
    """The tokens of the prompt up to and including each block, and a hash naming that
    prefix (of the blocks with their ``roles``, when given)."""
    sums: list[int] = []
    hashes: list[str] = []
    running, digest = 0, hashlib.sha256()
    for i, block in enumerate(blocks):
        running += count_tokens(block)
        said = [roles[i], block] if roles is not None else block
        digest.update(json.dumps(said, sort_keys=True).encode())
        sums.append(running)
        hashes.append(digest.copy().hexdigest())
    return sums, hashes


@dataclass
class OpenAICache:
    """OpenAI's automatic prompt cache, as the module says: ``bill(items, key)`` answers
    one request (its messages, or a Responses request's input items) and keeps it."""

    min_tokens: int = 1024
    step: int = 128
    _kept: dict[str, set[str]] = field(default_factory=dict)

    def bill(self, items: Sequence[Any], key: str | None = None) -> Bill:
        sums, hashes = _prefixes(list(items))
        total = sums[-1] if sums else 0
        kept = self._kept.setdefault(key or "", set())
        read = 0
        for i in range(len(items) - 1, -1, -1):
            if hashes[i] in kept:
                read = sums[i]
                break
        read = read // self.step * self.step if read >= self.min_tokens else 0
        if total >= self.min_tokens:
            kept.update(hashes)
        return Bill(total - read, read, 0)


__all__ = [
    "MAX_BREAKPOINTS",
    "AnthropicCache",
    "Bill",
    "OpenAICache",
    "Prices",
    "anthropic_blocks",
    "anthropic_usage",
    "breakpoints",
    "count_tokens",
    "without_breakpoints",
]
