"""A deterministic, offline provider for demos, tests and benchmarks.

It answers in Anthropic's raw event shapes (``fake_events``), read as the Anthropic
provider reads them, so everything after it runs as with a real model; the reply is a
pure function of the request. It thinks when ``thinking`` is on (signed
``fake-sig-…``), calls a tool when given ``tools`` (the one the last user text names,
else the request's first; its input from the schema), and answers tool results by
echoing them, so a whole tool round trip runs without a network.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from worker.providers.anthropic_stream import REASONING, AnthropicReader
from worker.providers.parts import ModelEvent

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 29 words
    "the stream carries numbered events from one worker to many viewers who join late "
    "or reconnect and resume exactly where they left off without a gap or a repeat"
).split()


def _prompt_text(request: dict[str, Any]) -> str:
    if request.get("prompt"):
        return str(request["prompt"])
    last = request.get("messages", [{}])[-1].get("content", "")
    return last if isinstance(last, str) else " ".join(_texts(last))


def _texts(blocks: Any) -> list[str]:
    """The words of a turn's blocks: text, and the text of tool results (what a demo
    shows the fake "read")."""
    found: list[str] = []
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            found.append(block["text"])
        elif block.get("type") == "tool_result":
            content = block.get("content")
            found += [content] if isinstance(content, str) else _texts(content)
    return found


def fake_reply(request: dict[str, Any]) -> list[str]:
    """The chunks of the reply: an echo of the prompt, then words chosen by its hash."""
    prompt = _prompt_text(request)
    n = max(1, min(int(request.get("max_tokens", 64)), 64))
    digest = hashlib.sha256(prompt.encode()).digest()
    words = [_WORDS[digest[i % len(digest)] % len(_WORDS)] for i in range(n)]
    return ["You said: ", prompt, "\n", *[f"{w} " for w in words[:-1]], words[-1] + "."]


def _sample(schema: Any, prompt: str) -> Any:
    """A value of a JSON schema's type: its ``default`` if it has one, else the prompt for
    strings and 1, true, [] or null for the others."""
    if isinstance(schema, dict) and "default" in schema:
        return schema["default"]
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {name: _sample(props.get(name), prompt) for name in names}
    samples = {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}
    return samples.get(kind, prompt) if isinstance(kind, str) else prompt


def _named(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _chosen_tool(request: dict[str, Any], prompt: str) -> dict[str, Any] | None:
    """The tool the last user text names; else the first of the request's own tools (the
    worker's own, ``_worker_tools``, are called only when named)."""
    tools: list[dict[str, Any]] = [
        t for t in request.get("tools") or [] if t.get("type") in (None, "custom")
    ]
    named = [t for t in tools if _named(prompt, t["name"])]
    if named:
        return named[0]
    workers = set(request.get("_worker_tools") or ())
    own = [t for t in tools if t["name"] not in workers]
    return own[0] if own else None


def fake_tool_call(request: dict[str, Any]) -> dict[str, Any] | None:
    """The tool_use the fake ends its turn with, if any."""
    if (request.get("tool_choice") or {}).get("type") == "none":
        return None
    last = (request.get("messages") or [{}])[-1].get("content")
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return None
    tool = _chosen_tool(request, _prompt_text(request))
    if tool is None:
        return None
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    prompt = _prompt_text(request)[:100]
    return {
        "id": f"toolu_fake_{digest[:16]}",
        "name": tool["name"],
        "input": _sample(tool["input_schema"], prompt),
    }


def fake_thinking(request: dict[str, Any]) -> list[str] | None:
    """The thinking chunks, when the request enables thinking."""
    if (request.get("thinking") or {}).get("type") != "enabled":
        return None
    return ["Thinking about: ", _prompt_text(request)[:200], "."]


def fake_signature(thinking: str) -> str:
    return "fake-sig-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


class FakeProvider:
    def __init__(self, delay_ms: float = 25.0) -> None:
        self.delay = delay_ms / 1000

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        yield self._events(request)

    async def _events(self, request: dict[str, Any]) -> AsyncIterator[ModelEvent]:
        reader = AnthropicReader()
        for n, raw in enumerate(fake_events(request)):
            if n and self.delay and raw["type"] == "content_block_delta":
                await asyncio.sleep(self.delay)
            for event in reader.feed(raw):
                yield event

    async def aclose(self) -> None:
        return None


def continued_reply(request: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """For a request that continues a cut answer (``worker.continuation``: the partial
    assistant turn, then the ask to go on): the request it continues and the rest of its
    reply after the partial text, in the reply's own chunks (none repeated: the fake is
    an exact model). None for any other request."""
    messages = request.get("messages") or []
    if not request.get("_continue") or len(messages) < 3:
        return None
    original = {**request, "messages": messages[:-2]}
    partial = "".join(
        b["text"] for b in messages[-2]["content"] if b.get("type") == "text" and "text" in b
    )
    chunks, told = fake_reply(original), 0
    if not "".join(chunks).startswith(partial):
        return original, chunks  # not its own answer: the whole reply, as a new one
    for i, chunk in enumerate(chunks):
        if told >= len(partial):
            return original, chunks[i:]
        if told + len(chunk) > len(partial):
            return original, [chunk[len(partial) - told :], *chunks[i + 1 :]]
        told += len(chunk)
    return original, []


def fake_events(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The whole reply, as Anthropic's raw stream events (the rest of it, for a request
    that continues a cut one)."""
    going_on = continued_reply(request)
    if going_on is not None:
        return _events_of(going_on[0], None, going_on[1])
    return _events_of(request, fake_thinking(request), fake_reply(request))


def _events_of(
    request: dict[str, Any], thought: list[str] | None, chunks: list[str]
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if thought is not None:
        signature = {"type": "signature_delta", "signature": fake_signature("".join(thought))}
        deltas = [{"type": "thinking_delta", "thinking": t} for t in thought]
        blocks += _block(
            0, {"type": "thinking", "thinking": "", "signature": ""}, [*deltas, signature]
        )
    index = 1 if thought is not None else 0
    blocks += _block(
        index, {"type": "text", "text": ""}, [{"type": "text_delta", "text": c} for c in chunks]
    )
    call = fake_tool_call(request)
    if call is not None:
        arguments = json.dumps(call["input"])
        blocks += _block(
            index + 1,
            {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}},
            [{"type": "input_json_delta", "partial_json": arguments}],
        )
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "fake",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": len(_prompt_text(request).split()), "output_tokens": 1},
        },
    }
    # One output token a delta, its thinking's counted apart as OpenAI counts reasoning.
    output = sum(1 for b in blocks if b["type"] == "content_block_delta")
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": output, REASONING: len(thought or [])},
    }
    return [start, *blocks, end, {"type": "message_stop"}]
