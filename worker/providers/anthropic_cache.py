"""Anthropic's prompt cache, on by default (``WORKER_PROMPT_CACHING``): ``cache_control``
breakpoints where a request's prefix is stable, so that each model call reads what the
one before it wrote.

Up to the API's four breakpoints (a request's own kept and counted): the message before
the newest, the newest, the system prompt's last block and the last tool. A takeover's
continuation reads the cut call's entry, which is within the API's lookback. Thinking
blocks carry none; the stored request is not changed (the blocks marked are copies).
Why each breakpoint: docs/cost.md.
"""

from __future__ import annotations

from typing import Any

MAX_BREAKPOINTS = 4
"""Anthropic refuses a request with more blocks marked than this."""

EPHEMERAL = {"type": "ephemeral"}
"""The five-minute cache, which each read refreshes."""

_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})


def with_breakpoints(params: dict[str, Any]) -> dict[str, Any]:
    """``messages.stream``'s arguments with breakpoints added, as the module says."""
    out = dict(params)
    room = MAX_BREAKPOINTS - marked(out)
    messages = list(out.get("messages") or [])
    for index in (len(messages) - 2, len(messages) - 1):
        if room > 0 and index >= 0:
            found = _marked_message(messages[index])
            if found is not None:
                messages[index] = found
                room -= 1
    out["messages"] = messages
    if room > 0 and out.get("system"):
        system = _marked_blocks(_blocks(out["system"]))
        if system is not None:
            out["system"] = system
            room -= 1
    if room > 0 and out.get("tools") and not _has_mark(out["tools"][-1]):
        out["tools"] = [*out["tools"][:-1], {**out["tools"][-1], "cache_control": EPHEMERAL}]
    return out


def marked(params: dict[str, Any]) -> int:
    """Blocks of a request that carry ``cache_control`` (its tools, system, messages)."""
    count = sum(1 for tool in params.get("tools") or [] if _has_mark(tool))
    count += sum(1 for block in _blocks(params.get("system")) if _has_mark(block))
    for message in params.get("messages") or []:
        count += sum(1 for block in _blocks(message.get("content")) if _has_mark(block))
    return count


def _blocks(content: Any) -> list[Any]:
    """A system prompt's or a message's content as blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _has_mark(block: Any) -> bool:
    return isinstance(block, dict) and bool(block.get("cache_control"))


def _marked_message(message: dict[str, Any]) -> dict[str, Any] | None:
    """``message`` with a breakpoint on its last block that can carry one; None when it
    has one already, or no such block."""
    content = _marked_blocks(_blocks(message.get("content")))
    return None if content is None else {**message, "content": content}


def _marked_blocks(blocks: list[Any]) -> list[Any] | None:
    if any(_has_mark(b) for b in blocks):
        return None
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        if isinstance(block, dict) and block.get("type") not in _UNMARKABLE:
            return [*blocks[:i], {**block, "cache_control": EPHEMERAL}, *blocks[i + 1 :]]
    return None


__all__ = ["EPHEMERAL", "MAX_BREAKPOINTS", "marked", "with_breakpoints"]
