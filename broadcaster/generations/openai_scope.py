"""What of a generation request (Anthropic's Messages shape) the ``openai`` provider can
send: the one rule, which the front-end answers with a 422 naming each field and the
worker checks before it translates (a request stored before the rule changed fails
there, with no output). Pure: the request as a plain dict, already checked for shape.
"""

from __future__ import annotations

from typing import Any

NO_EQUIVALENT = "has no OpenAI equivalent"

Where = tuple[str | int, ...]
Problem = tuple[Where, str]

BLOCKS = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}
"""The blocks Chat Completions has an equivalent for, in each role's turns (thinking sent
back is dropped on the way: it takes no reasoning input)."""


def openai_problems(request: dict[str, Any]) -> list[Problem]:
    """Each part of ``request`` the ``openai`` provider cannot send, where it is."""
    problems: list[Problem] = [
        (("tools", i, "type"), f"Anthropic's {tool['type']!r} {NO_EQUIVALENT}")
        for i, tool in enumerate(request.get("tools") or [])
        if tool.get("type") not in (None, "custom")
    ]
    for m, message in enumerate(request.get("messages") or []):
        for b, block in enumerate(as_blocks(message["content"])):
            problems += _block(("messages", m, "content", b), message["role"], block)
    return problems


def as_blocks(content: Any) -> list[dict[str, Any]]:
    """Content as blocks: a string is shorthand for one text block."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _block(where: Where, role: str, block: dict[str, Any]) -> list[Problem]:
    kind = block["type"]
    if kind not in BLOCKS[role]:
        return [(where, f"a {kind} block in a {role} turn {NO_EQUIVALENT}")]
    if kind == "document":
        return _document(where, block["source"])
    if kind == "tool_result":
        return [
            ((*where, "content", p), f"{part['type']} in a tool_result {NO_EQUIVALENT} (text only)")
            for p, part in enumerate(as_blocks(block.get("content") or []))
            if part["type"] != "text"
        ]
    return []


def _document(where: Where, source: dict[str, Any]) -> list[Problem]:
    if source["type"] == "url":
        by_url = f"a document by URL {NO_EQUIVALENT}: send it as base64"
        return [((*where, "source", "type"), by_url)]
    if source["type"] == "content":
        return [
            ((*where, "source", "content", p), f"an image in a document {NO_EQUIVALENT}")
            for p, part in enumerate(as_blocks(source["content"]))
            if part["type"] != "text"
        ]
    return []


__all__ = ["BLOCKS", "NO_EQUIVALENT", "as_blocks", "openai_problems"]
