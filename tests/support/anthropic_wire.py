"""The HTTP side of the local Anthropic server (``tests/support/fake_anthropic.py``): the
record of each exchange, the buffered reader of a connection, and the checks of a
request's options and turns that do not need the server's state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# --------------------------------------------------------------------------------------------
# Records


class RecordedRequest(NamedTuple):
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body (None if there was none or it was not JSON)


@dataclass
class Exchange:
    """One request and how its script went."""

    index: int
    connection: int  # which TCP connection carried it (1, 2, ...): shows keep-alive reuse
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    started_at: float = field(default_factory=time.monotonic)
    completed_at: float | None = None  # the script played to its end
    client_closed_at: float | None = None  # the client left before the script's end
    frames_sent: int = 0
    deltas_sent: int = 0  # content_block_delta frames: one output token each, as scripted
    bill: Any = None  # the input tokens billed by the server's prompt cache (prompt_cache.Bill)

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    @property
    def client_closed(self) -> bool:
        return self.client_closed_at is not None


class _ClientGone(Exception):
    pass


class _Conn:
    """Buffered reads over a StreamReader, for the request parser and the EOF watcher."""

    MAX_LINE = 65536

    def __init__(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False

    async def _fill(self) -> bool:
        if self.eof:
            return False
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def readline(self) -> bytes | None:
        while True:
            pos = self.buf.find(b"\n")
            if pos >= 0:
                line = bytes(self.buf[: pos + 1])
                del self.buf[: pos + 1]
                return line
            if len(self.buf) > self.MAX_LINE:
                raise ValueError("line too long")
            if not await self._fill():
                return None

    async def readexactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise ValueError("body cut short")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise _ClientGone from exc


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


def _options_problem(body: dict[str, Any]) -> str | None:
    """What the API says of ``thinking`` and ``temperature`` out of range."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body.get("max_tokens", 0):
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    return None


def _merged_turns(messages: list[Any]) -> list[tuple[int, Any, list[Any]]]:
    """``(first index, role, blocks)`` of each turn: the API merges consecutive messages
    of one role into one turn before it checks them."""
    turns: list[tuple[int, Any, list[Any]]] = []
    for m, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        blocks = content if isinstance(content, list) else []
        if turns and turns[-1][1] == role:
            turns[-1][2].extend(blocks)
        else:
            turns.append((m, role, list(blocks)))
    return turns


def turns_problem(messages: Any, signatures: dict[str, set[str]], redacted: set[str]) -> str | None:
    """What the API would say of these turns, if anything; ``signatures`` and ``redacted``
    are the thinking signatures (with the texts they were sent for) and redacted data the
    server sent, the only ones it accepts back."""
    if not isinstance(messages, list):
        return "messages: Field required"
    asked: list[str] = []
    for m, role, blocks in _merged_turns(messages):
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return "messages: text content blocks must be non-empty"
        if role == "assistant":
            problem = _signed_problem(m, blocks, signatures, redacted)
            if problem:
                return problem
            asked = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            continue
        answered = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        stray = [i for i in answered if i not in asked]
        if stray:
            return (
                f"messages.{m}.content: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        missing = [i for i in asked if i not in answered]
        if missing:
            return (
                f"messages.{m - 1}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {missing[0]}"
            )
        asked = []
    return None


def _signed_problem(
    m: int, blocks: list[Any], signatures: dict[str, set[str]], redacted: set[str]
) -> str | None:
    for b, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "thinking":
            texts = signatures.get(block.get("signature"), set())
            if block.get("thinking") not in texts:
                return f"messages.{m}.content.{b}: Invalid `signature` in `thinking` block"
        if kind == "redacted_thinking" and block.get("data") not in redacted:
            return f"messages.{m}.content.{b}: Invalid `data` in `redacted_thinking` block"
    return None
