"""Streams of UI message chunks the AI SDK accepts, of every part type, drawn by
hypothesis (``ui_stream``): what a generation's log may hold, for the property test of
the history fold against the AI SDK's own reader, and for a chat published part by part.

A stream is drawn one chunk at a time from what is valid where it stands (a delta only
for a part that is open, a tool's output only for a call that was made), so every stream
is one the SDK assembles without complaint; which chunks may come is the caller's
``alphabet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

Chunk = dict[str, Any]

NAMES = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=6,
)
OBJECTS = st.dictionaries(NAMES, JSON, max_size=3)
PROVIDER_METADATA = st.dictionaries(NAMES, OBJECTS, min_size=1, max_size=2)

SDK6 = [
    "start",
    "text",
    "reasoning",
    "file",
    "source-url",
    "source-document",
    "data",
    "tool-input-start",
    "tool-input-delta",
    "tool-input-available",
    "tool-input-error",
    "tool-approval-request",
    "tool-output-available",
    "tool-output-error",
    "tool-output-denied",
    "start-step",
    "finish-step",
    "message-metadata",
    "error",
]
"""Every chunk the AI SDK 6 takes (``abort`` and ``finish`` end a stream)."""

SDK7 = [
    *(k for k in SDK6 if k not in ("tool-input-delta", "tool-input-error")),
    "reasoning-file",
    "custom",
]
"""The AI SDK 7's own parts besides those both read alike (they differ on a call's
``rawInput`` while it streams, which the history keeps as the AI SDK 6 does)."""


@dataclass
class _Stream:
    draw: Any
    alphabet: list[str]
    chunks: list[Chunk] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    streaming: dict[str, str] = field(default_factory=dict)
    """Calls whose input streams: their JSON still to send."""
    calls: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Calls made (input streaming, available or failed): each one's tool and whether it
    is dynamic, the same in all its chunks, as a model's call is."""
    serial: int = 0

    def new_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def maybe(self, chunk: Chunk, key: str, values: Any) -> None:
        if self.draw(st.booleans()):
            chunk[key] = self.draw(values)

    def valid(self) -> list[str]:
        open_needed = {
            "text-delta": self.text,
            "text-end": self.text,
            "reasoning-delta": self.reasoning,
            "reasoning-end": self.reasoning,
        }
        kinds = [k for k in self.alphabet if k not in ("text", "reasoning")]
        kinds += [f"{k}-start" for k in ("text", "reasoning") if k in self.alphabet]
        kinds += [
            k for k, opened in open_needed.items() if opened and k.split("-")[0] in self.alphabet
        ]
        if not self.streaming:
            kinds = [k for k in kinds if k != "tool-input-delta"]
        if not self.calls:
            calls = ("tool-approval-request", "tool-output-available", "tool-output-error")
            kinds = [k for k in kinds if k not in (*calls, "tool-output-denied")]
        return kinds

    def chunk(self) -> Chunk:
        kind = self.draw(st.sampled_from(self.valid()))
        family, _, step = kind.partition("-")
        if family in ("text", "reasoning") and step in ("start", "delta", "end"):
            return self._span(family, step)
        method = getattr(self, "_" + kind.replace("-", "_"), None)
        return method() if method else self._plain(kind)

    def _plain(self, kind: str) -> Chunk:
        chunk: Chunk = {"type": kind}
        if kind in ("start", "message-metadata"):
            chunk["messageMetadata"] = self.draw(OBJECTS)
        if kind == "error":
            chunk["errorText"] = self.draw(st.text(max_size=8))
        return chunk

    def _span(self, family: str, step: str) -> Chunk:
        opened = self.text if family == "text" else self.reasoning
        if step == "start":
            part_id = self.new_id(family[0])
            opened.append(part_id)
        else:
            part_id = self.draw(st.sampled_from(opened))
        chunk: Chunk = {"type": f"{family}-{step}", "id": part_id}
        if step == "delta":
            chunk["delta"] = self.draw(st.text(min_size=1, max_size=6))
        if step == "end":
            opened.remove(part_id)
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _finish_step(self) -> Chunk:
        self.text.clear()  # the SDK closes the step's open parts: no delta may follow
        self.reasoning.clear()
        return {"type": "finish-step"}

    def _file(self, kind: str = "file") -> Chunk:
        chunk: Chunk = {
            "type": kind,
            "url": "data:text/plain;base64,aGk=",
            "mediaType": "text/plain",
        }
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _reasoning_file(self) -> Chunk:
        return self._file("reasoning-file")

    def _custom(self) -> Chunk:
        chunk: Chunk = {"type": "custom", "kind": self.draw(NAMES)}
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _source_url(self) -> Chunk:
        chunk: Chunk = {
            "type": "source-url",
            "sourceId": self.new_id("s"),
            "url": "https://a.example/",
        }
        self.maybe(chunk, "title", st.text(max_size=6))
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _source_document(self) -> Chunk:
        chunk: Chunk = {
            "type": "source-document",
            "sourceId": self.new_id("s"),
            "mediaType": "application/pdf",
            "title": self.draw(st.text(max_size=6)),
        }
        self.maybe(chunk, "filename", st.text(max_size=6))
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _data(self) -> Chunk:
        chunk: Chunk = {"type": "data-" + self.draw(st.sampled_from(["note", "weather"]))}
        self.maybe(chunk, "id", st.sampled_from(["d1", "d2"]))
        chunk["data"] = self.draw(JSON)
        self.maybe(chunk, "transient", st.booleans())
        return chunk

    def _call_fields(self, chunk: Chunk) -> Chunk:
        name, dynamic = self.calls[chunk["toolCallId"]]
        chunk["toolName"] = name
        if dynamic:
            chunk["dynamic"] = True
        for key, values in (
            ("title", st.text(max_size=6)),
            ("providerExecuted", st.booleans()),
            ("providerMetadata", PROVIDER_METADATA),
            ("toolMetadata", OBJECTS),
        ):
            self.maybe(chunk, key, values)
        return chunk

    def _new_call(self) -> str:
        call = self.new_id("c")
        self.calls[call] = (self.draw(NAMES), self.draw(st.booleans()))
        return call

    def _tool_input_start(self) -> Chunk:
        call = self._new_call()
        self.streaming[call] = json.dumps(self.draw(OBJECTS))
        return self._call_fields({"type": "tool-input-start", "toolCallId": call})

    def _tool_input_delta(self) -> Chunk:
        call = self.draw(st.sampled_from(sorted(self.streaming)))
        left = self.streaming[call]
        cut = self.draw(st.integers(1, max(len(left), 1)))
        self.streaming[call] = left[cut:]
        if not self.streaming[call]:
            del self.streaming[call]
        return {"type": "tool-input-delta", "toolCallId": call, "inputTextDelta": left[:cut]}

    def _a_call(self) -> str:
        """A call made already, or a new one (a call may come whole, with no deltas)."""
        if self.calls and self.draw(st.booleans()):
            return str(self.draw(st.sampled_from(sorted(self.calls))))
        return self._new_call()

    def _tool_input_available(self) -> Chunk:
        call = self._a_call()
        self.streaming.pop(call, None)
        chunk = {"type": "tool-input-available", "toolCallId": call, "input": self.draw(OBJECTS)}
        return self._call_fields(chunk)

    def _tool_input_error(self) -> Chunk:
        call = self._a_call()
        self.streaming.pop(call, None)
        chunk = {"type": "tool-input-error", "toolCallId": call, "input": self.draw(JSON)}
        chunk["errorText"] = self.draw(st.text(max_size=6))
        return self._call_fields(chunk)

    def _tool_approval_request(self) -> Chunk:
        call = self.draw(st.sampled_from(sorted(self.calls)))
        chunk = {
            "type": "tool-approval-request",
            "toolCallId": call,
            "approvalId": self.new_id("a"),
        }
        self.maybe(chunk, "approvalDescriptor", OBJECTS)
        self.maybe(chunk, "signature", st.text(min_size=1, max_size=6))
        return chunk

    def _tool_output_available(self) -> Chunk:
        call = self.draw(st.sampled_from(sorted(self.calls)))
        chunk = {"type": "tool-output-available", "toolCallId": call, "output": self.draw(JSON)}
        self.maybe(chunk, "preliminary", st.booleans())
        self.maybe(chunk, "providerExecuted", st.booleans())
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _tool_output_error(self) -> Chunk:
        call = self.draw(st.sampled_from(sorted(self.calls)))
        chunk = {"type": "tool-output-error", "toolCallId": call, "errorText": "failed"}
        self.maybe(chunk, "providerMetadata", PROVIDER_METADATA)
        return chunk

    def _tool_output_denied(self) -> Chunk:
        return {
            "type": "tool-output-denied",
            "toolCallId": self.draw(st.sampled_from(sorted(self.calls))),
        }


@st.composite
def ui_stream(draw: Any, alphabet: list[str], max_chunks: int = 30) -> list[Chunk]:
    """A stream of chunks of ``alphabet``'s kinds, valid as the AI SDK reads it, ended
    (or not) as a generation's log ends: ``finish``, ``abort``, or nothing yet."""
    stream = _Stream(draw, alphabet)
    if draw(st.booleans()):
        stream.chunks.append({"type": "start", "messageId": "m1"})
    for _ in range(draw(st.integers(0, max_chunks))):
        stream.chunks.append(stream.chunk())
    end = draw(st.sampled_from(["finish", "abort", None]))
    if end == "finish":
        finish: Chunk = {"type": "finish"}
        stream.maybe(finish, "messageMetadata", OBJECTS)
        stream.chunks.append(finish)
    elif end == "abort":
        stream.chunks.append({"type": "abort", "reason": "cancelled"})
    return stream.chunks
