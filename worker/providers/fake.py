"""A deterministic, offline provider for demos, tests and benchmarks.

It answers in Anthropic's raw event shapes, so everything after it (mapping, merging,
appending) runs exactly as with the real model. The reply is a pure function of the
request: the same prompt always gives the same text, in the same chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 29 words
    "the stream carries numbered events from one worker to many viewers who join late "
    "or reconnect and resume exactly where they left off without a gap or a repeat"
).split()


def _prompt_text(request: dict[str, Any]) -> str:
    if request.get("prompt"):
        return str(request["prompt"])
    last = request.get("messages", [{}])[-1].get("content", "")
    return last if isinstance(last, str) else str(last)


def fake_reply(request: dict[str, Any]) -> list[str]:
    """The chunks of the reply: an echo of the prompt, then words chosen by its hash."""
    prompt = _prompt_text(request)
    n = max(1, min(int(request.get("max_tokens", 64)), 64))
    digest = hashlib.sha256(prompt.encode()).digest()
    words = [_WORDS[digest[i % len(digest)] % len(_WORDS)] for i in range(n)]
    return ["You said: ", prompt, "\n", *[f"{w} " for w in words[:-1]], words[-1] + "."]


class FakeProvider:
    def __init__(self, delay_ms: float = 25.0) -> None:
        self.delay = delay_ms / 1000

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        yield self._events(request)

    async def _events(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        chunks = fake_reply(request)
        yield {
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
        yield {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        for chunk in chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": chunk},
            }
        yield {"type": "content_block_stop", "index": 0}
        yield {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(chunks)},
        }
        yield {"type": "message_stop"}

    async def aclose(self) -> None:
        return None
