"""A tool call's input while it streams, as the AI SDK's client parses it
(``parsePartialJson``): the JSON so far, closed where it was cut (``fixJson``), so that a
history read mid-call shows the input a live tab shows. Pure.
"""

from __future__ import annotations

import json
from typing import Any

MISSING: Any = object()
"""No value (JavaScript's ``undefined``): the text could not be read as JSON."""

_LITERALS = ("true", "false", "null")
_DIGITS = frozenset("0123456789")


def _no_constants(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")  # JSON.parse refuses NaN and Infinity


def _parse(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return MISSING


def parse_partial(text: str) -> Any:
    """The value of ``text``, or of it repaired; ``MISSING`` when neither parses."""
    value = _parse(text)
    return value if value is not MISSING else _parse(fix_json(text))


class _Fixer:
    """The AI SDK's ``fixJson``: a scan that keeps the last index where the text was
    valid and the stack of what is open there."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.stack = ["ROOT"]
        self.last = -1
        self.literal_start = 0
        self.hex_digits = 0

    def value_start(self, char: str, i: int, swap: str) -> None:
        opens = {'"': "INSIDE_STRING", "{": "INSIDE_OBJECT_START", "[": "INSIDE_ARRAY_START"}
        if char in opens:
            inner = opens[char]
        elif char in "ftn":
            inner = "INSIDE_LITERAL"
            self.literal_start = i
        elif char == "-" or char in _DIGITS:
            inner = "INSIDE_NUMBER"
        else:
            return
        if char != "-":
            self.last = i
        self.stack[-1] = swap
        self.stack.append(inner)

    def after_object_value(self, char: str, i: int) -> None:
        if char == ",":
            self.stack[-1] = "INSIDE_OBJECT_AFTER_COMMA"
        elif char == "}":
            self.last = i
            self.stack.pop()

    def after_array_value(self, char: str, i: int) -> None:
        if char == ",":
            self.stack[-1] = "INSIDE_ARRAY_AFTER_COMMA"
        elif char == "]":
            self.last = i
            self.stack.pop()

    def after_value(self, char: str, i: int) -> None:
        """A number or literal ended at ``char``: what follows it in its container."""
        if self.stack[-1] == "INSIDE_OBJECT_AFTER_VALUE":
            self.after_object_value(char, i)
        elif self.stack[-1] == "INSIDE_ARRAY_AFTER_VALUE":
            self.after_array_value(char, i)

    def step(self, char: str, i: int) -> None:
        state = self.stack[-1]
        if state == "ROOT":
            self.value_start(char, i, "FINISH")
        elif state in ("INSIDE_OBJECT_START", "INSIDE_OBJECT_AFTER_COMMA"):
            if char == '"':
                self.stack[-1] = "INSIDE_OBJECT_KEY"
            elif char == "}" and state == "INSIDE_OBJECT_START":
                self.last = i
                self.stack.pop()
        elif state == "INSIDE_OBJECT_KEY":
            if char == '"':
                self.stack[-1] = "INSIDE_OBJECT_AFTER_KEY"
        elif state == "INSIDE_OBJECT_AFTER_KEY":
            if char == ":":
                self.stack[-1] = "INSIDE_OBJECT_BEFORE_VALUE"
        elif state == "INSIDE_OBJECT_BEFORE_VALUE":
            self.value_start(char, i, "INSIDE_OBJECT_AFTER_VALUE")
        elif state == "INSIDE_OBJECT_AFTER_VALUE":
            self.after_object_value(char, i)
        else:
            self._step_more(state, char, i)

    def _step_more(self, state: str, char: str, i: int) -> None:
        if state == "INSIDE_STRING":
            if char == '"':
                self.stack.pop()
                self.last = i
            elif char == "\\":
                self.stack.append("INSIDE_STRING_ESCAPE")
            else:
                self.last = i
        elif state == "INSIDE_ARRAY_START":
            self.last = i
            if char == "]":
                self.stack.pop()
            else:
                self.value_start(char, i, "INSIDE_ARRAY_AFTER_VALUE")
        elif state == "INSIDE_ARRAY_AFTER_VALUE":
            if char in ",]":
                self.after_array_value(char, i)
            else:
                self.last = i
        elif state == "INSIDE_ARRAY_AFTER_COMMA":
            self.value_start(char, i, "INSIDE_ARRAY_AFTER_VALUE")
        elif state == "INSIDE_STRING_ESCAPE":
            self.stack.pop()
            if char == "u":
                self.hex_digits = 0
                self.stack.append("INSIDE_STRING_UNICODE_ESCAPE")
            else:
                self.last = i
        elif state == "INSIDE_STRING_UNICODE_ESCAPE":
            if char in "0123456789abcdefABCDEF":
                self.hex_digits += 1
                if self.hex_digits == 4:
                    self.stack.pop()
                    self.last = i
        elif state == "INSIDE_NUMBER":
            self._number(char, i)
        elif state == "INSIDE_LITERAL":
            partial = self.text[self.literal_start : i + 1]
            if any(word.startswith(partial) for word in _LITERALS):
                self.last = i
            else:
                self.stack.pop()
                self.after_value(char, i)

    def _number(self, char: str, i: int) -> None:
        if char in _DIGITS:
            self.last = i
        elif char in "eE-.":
            return
        else:
            self.stack.pop()
            if char == ",":
                self.after_value(char, i)
            elif char == "}" and self.stack[-1] == "INSIDE_OBJECT_AFTER_VALUE":
                self.after_object_value(char, i)
            elif char == "]" and self.stack[-1] == "INSIDE_ARRAY_AFTER_VALUE":
                self.after_array_value(char, i)

    def closed(self) -> str:
        result = self.text[: self.last + 1]
        for state in reversed(self.stack):
            if state == "INSIDE_STRING":
                result += '"'
            elif state.startswith("INSIDE_OBJECT"):
                result += "}"
            elif state.startswith("INSIDE_ARRAY"):
                result += "]"
            elif state == "INSIDE_LITERAL":
                partial = self.text[self.literal_start :]
                word = next((w for w in _LITERALS if w.startswith(partial)), None)
                if word is not None:
                    result += word[len(partial) :]
        return result


def fix_json(text: str) -> str:
    """``text`` cut anywhere, closed into JSON as the AI SDK closes it."""
    fixer = _Fixer(text)
    for i, char in enumerate(text):
        fixer.step(char, i)
    return fixer.closed()
